"""The simulator's listeners: the public site (portal, one-stop app, APIs), its TLS twin and the admin API.

Public HTTP listener: `/` portal home, `/motcua/dang-nhap` app login page, `POST /login`,
`/motcua/ho-so` (needs the session), `/o/rest/v2/dossiers[/{id or dossierNo}]` (OpenCPS v2; also under
`/o/secure/rest/v2`), `/dvcqg/hoso` (national sync shape), `/export/dossiers.csv`. The TLS listener
serves the same site. Request scopes: `/o/`, `/dvcqg`, `/export` are `api`; `/motcua`, `/login` are
`app`; the rest is `portal`.

`down` stops both public listeners whatever its scope (they serve every scope, and a refused connection
cannot be per-path); every other fault applies to its scope only. The admin listener never goes down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import html
import json
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from monitor.simulator import certs
from monitor.simulator.faults import Fault, ScheduledFault, fault_from_request, schedule_faults
from monitor.simulator.worktime import VN
from monitor.simulator.world import (
    FINISHED_STATUSES,
    SimDossier,
    SimulationReport,
    World,
    format_local,
    parse_local,
)

__all__ = ["DEFAULT_PASSWORD", "MAINTENANCE_MARKER", "PORTAL_MARKER", "Simulator"]

log = structlog.get_logger(__name__)

PORTAL_MARKER = "Cổng Dịch vụ công tỉnh Đồng Tháp"
MAINTENANCE_MARKER = "Hệ thống đang bảo trì"
DEFAULT_PASSWORD = "tthc-demo"
_SESSION_COOKIE = "JSESSIONID"
_API_PREFIXES = ("/o/rest/v2", "/o/secure/rest/v2")
_FAULTS_KEY = web.RequestKey("faults", dict)


def _default_clock() -> datetime:
    return datetime.now(VN)


def _scope_of(path: str) -> str:
    if path.startswith(("/o/", "/dvcqg", "/export")):
        return "api"
    if path.startswith(("/motcua", "/login")):
        return "app"
    return "portal"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )


def _json_error(status: int, message: str, description: str = "") -> web.Response:
    # The shape Liferay's JAX-RS error mapper gives OpenCPS errors.
    body = {"code": status, "message": message, "description": description or message}
    return web.json_response(body, status=status)


class Simulator:
    """A provincial one-stop dossier system with fault switches, for the demo and for tests.

    `clock` returns aware datetimes (default: now in Asia/Ho_Chi_Minh); dossier data and fault
    durations follow it. TLS certificate validity follows the real clock, as TLS peers check it.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        clock: Callable[[], datetime] | None = None,
        dossier_count: int = 300,
        group_id: str = "35402",
        username: str = "admin",
        password: str | SecretStr = DEFAULT_PASSWORD,
        tls: bool = True,
        state_dir: Path | None = None,
        schedule: Iterable[ScheduledFault | tuple[Any, ...]] = (),
        tick_interval: float = 1.0,
        code_prefix: str = "",
    ) -> None:
        self.clock = clock or _default_clock
        self.epoch = self.clock()
        self.world = World(seed, self.epoch, dossier_count, code_prefix)
        self.group_id = group_id
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self.tls = tls
        self._state_dir = state_dir
        self._own_state_dir = False
        self.tick_interval = tick_interval
        self._faults: list[Fault] = schedule_faults(schedule, self.epoch)
        self._sessions: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._host = "127.0.0.1"
        self._port = 0
        self._tls_port = 0
        self._admin_port = 0
        self._public: list[web.AppRunner] = []
        self._admin: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._started = False
        self._tls_context: ssl.SSLContext | None = None
        self._expired_context: ssl.SSLContext | None = None
        self._expiring_context: ssl.SSLContext | None = None
        self.ca_file: Path | None = None

    def change_password(self, password: str) -> None:
        """The office changed the API account's password: the old one and every session stop working."""
        self._password = SecretStr(password)
        self._sessions.clear()

    def __repr__(self) -> str:
        return f"Simulator(port={self._port}, dossiers={len(self.world.dossiers)}, up={self.is_up})"

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, admin_port: int = 0, tls_port: int = 0
    ) -> None:
        """Bind the admin, public and (when enabled) TLS listeners; port 0 picks a free port."""
        if self._started:
            raise RuntimeError("simulator already started")
        self._host, self._port, self._tls_port, self._admin_port = host, port, tls_port, admin_port
        if self.tls:
            self._prepare_tls()
        self._admin = web.AppRunner(self._admin_app(), access_log=None)
        await self._admin.setup()
        admin_site = web.TCPSite(self._admin, host, admin_port)
        await admin_site.start()
        self._admin_port = _bound_port(admin_site)
        self._started = True
        await self._start_public()
        await self._reconcile()
        self._watcher = asyncio.create_task(self._watch(), name="simulator-watch")
        log.info("simulator_started", portal=self.portal_url, admin=self.admin_url)

    async def stop(self) -> None:
        """Close every listener and remove the temporary state directory, if the simulator made one."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._stop_public()
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        self._started = False
        if self._own_state_dir and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None
            self._own_state_dir = False

    async def __aenter__(self) -> Simulator:
        if not self._started:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _prepare_tls(self) -> None:
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="tthc-sim-"))
            self._own_state_dir = True
        self._state_dir.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        ca = certs.make_ca()
        self.ca_file = self._state_dir / "sim-ca.pem"
        self.ca_file.write_bytes(ca.cert_pem)
        key_dir = self._state_dir / "sim-tls"
        hosts = ("localhost", "127.0.0.1", "::1")
        good = ca.issue(hosts)
        expired = ca.issue(hosts, not_before=now - timedelta(days=400), not_after=now - timedelta(days=2))
        expiring = ca.issue(hosts, not_before=now - timedelta(days=85), not_after=now + timedelta(days=5))
        self._tls_context = certs.server_context(good, key_dir, "good")
        self._expired_context = certs.server_context(expired, key_dir, "expired")
        self._expiring_context = certs.server_context(expiring, key_dir, "expiring")
        # The certificate is chosen per connection, so the fault switches without a restart.
        self._tls_context.sni_callback = self._choose_certificate

    def _choose_certificate(self, ssl_object: ssl.SSLObject, server_name: str | None, _: Any) -> None:
        now = self.clock()
        kinds = {fault.fault for fault in self._faults if fault.active(now)}
        if "expired_cert" in kinds:
            ssl_object.context = self._expired_context  # type: ignore[assignment]
        elif "cert_expiring" in kinds:
            ssl_object.context = self._expiring_context  # type: ignore[assignment]

    async def _start_public(self) -> None:
        runner = web.AppRunner(self._public_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._port = _bound_port(site)
        self._public.append(runner)
        if self.tls:
            tls_runner = web.AppRunner(self._public_app(), access_log=None, shutdown_timeout=0.5)
            await tls_runner.setup()
            tls_site = web.TCPSite(tls_runner, self._host, self._tls_port, ssl_context=self._tls_context)
            await tls_site.start()
            self._tls_port = _bound_port(tls_site)
            self._public.append(tls_runner)

    async def _stop_public(self) -> None:
        runners, self._public = self._public, []
        for runner in runners:
            await runner.cleanup()

    @property
    def is_up(self) -> bool:
        """Whether the public listeners are accepting connections."""
        return bool(self._public)

    # --- URLs --------------------------------------------------------------------------------------

    def _base(self, scheme: str = "http", port: int | None = None) -> str:
        if not self._started:
            raise RuntimeError("simulator not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port if port is None else port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def tls_port(self) -> int:
        return self._tls_port

    @property
    def admin_port(self) -> int:
        return self._admin_port

    @property
    def portal_url(self) -> str:
        return self._base() + "/"

    @property
    def app_url(self) -> str:
        """The one-stop app's login page; the form posts to `login_url`."""
        return self._base() + "/motcua/dang-nhap"

    @property
    def login_url(self) -> str:
        return self._base() + "/login"

    @property
    def dashboard_url(self) -> str:
        return self._base() + "/motcua/ho-so"

    @property
    def api_base(self) -> str:
        return self._base() + "/o/rest/v2"

    @property
    def national_url(self) -> str:
        return self._base() + "/dvcqg/hoso"

    @property
    def csv_url(self) -> str:
        return self._base() + "/export/dossiers.csv"

    @property
    def https_url(self) -> str:
        if not self.tls:
            raise RuntimeError("simulator started without tls")
        return self._base("https", self._tls_port) + "/"

    @property
    def admin_url(self) -> str:
        return self._base(port=self._admin_port)

    def urls(self) -> dict[str, str]:
        urls = {
            "portal_url": self.portal_url,
            "app_url": self.app_url,
            "login_url": self.login_url,
            "api_base": self.api_base,
            "national_url": self.national_url,
            "csv_url": self.csv_url,
            "admin_url": self.admin_url,
        }
        if self.tls:
            urls["https_url"] = self.https_url
            urls["ca_file"] = str(self.ca_file)
        return urls

    # --- time and faults ---------------------------------------------------------------------------

    def simulate_until(self, now: datetime) -> SimulationReport:
        """Move the dossier data to `now` (arrivals, pauses, resumes, extensions, releases)."""
        return self.world.simulate_until(now)

    async def advance(self, to: datetime | None = None) -> SimulationReport:
        """Move the data to `to` (default: the clock) and apply faults that started or ended by then."""
        report = self.simulate_until(to or self.clock())
        await self._reconcile()
        return report

    @property
    def faults(self) -> tuple[Fault, ...]:
        """Faults active now (scheduled ones still to come are not listed)."""
        now = self.clock()
        return tuple(fault for fault in self._faults if fault.active(now))

    @property
    def planned_faults(self) -> tuple[Fault, ...]:
        return tuple(self._faults)

    async def set_fault(
        self,
        fault: str,
        scope: str = "all",
        *,
        duration: timedelta | str | None = None,
        delay: timedelta | str | None = None,
        status: int | None = None,
        variant: str | None = None,
    ) -> Fault:
        """Switch a fault on now, for `duration` (clock time) or until cleared."""
        data: dict[str, Any] = {"fault": fault, "scope": scope}
        for key, value in (
            ("duration", duration),
            ("delay", delay),
            ("status", status),
            ("variant", variant),
        ):
            if value is not None:
                data[key] = value
        return await self._add_fault(fault_from_request(data, self.clock()))

    async def _add_fault(self, fault: Fault) -> Fault:
        # One fault of a kind per scope: setting it again replaces the old one (new delay, duration).
        self._faults = [f for f in self._faults if not (f.fault == fault.fault and f.scope == fault.scope)]
        self._faults.append(fault)
        log.info("simulator_fault_set", **{k: v for k, v in fault.to_json().items() if v is not None})
        await self._reconcile()
        return fault

    async def clear_faults(self, fault: str | None = None, scope: str | None = None) -> int:
        """Clear faults (all, or those of a kind and/or scope), scheduled ones included; returns how many."""
        keep = [
            f
            for f in self._faults
            if (fault is not None and f.fault != fault) or (scope is not None and f.scope != scope)
        ]
        cleared = len(self._faults) - len(keep)
        self._faults = keep
        log.info("simulator_faults_cleared", count=cleared)
        await self._reconcile()
        return cleared

    def _active(self, scope: str | None) -> dict[str, Fault]:
        now = self.clock()
        return {f.fault: f for f in self._faults if f.active(now) and f.covers(scope)}

    async def _reconcile(self) -> None:
        """Stop or restart the public listeners to match `down`; drop faults that have ended."""
        async with self._lock:
            now = self.clock()
            self._faults = [fault for fault in self._faults if not fault.expired(now)]
            if not self._started:
                return
            want_down = any(fault.fault == "down" and fault.active(now) for fault in self._faults)
            if want_down and self.is_up:
                await self._stop_public()
                log.info("simulator_down")
            elif not want_down and not self.is_up:
                # Same ports as before, so clients see the site come back where it was.
                await self._start_public()
                log.info("simulator_up")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                await self.advance()
            except Exception:  # the demo must survive a bad tick; the error is logged
                log.exception("simulator_tick_failed")

    # --- public site -------------------------------------------------------------------------------

    def _public_app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware])
        app.router.add_get("/", self._portal)
        app.router.add_get("/motcua", self._login_page)
        app.router.add_get("/motcua/", self._login_page)
        app.router.add_get("/motcua/dang-nhap", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_get("/motcua/ho-so", self._dashboard)
        for prefix in _API_PREFIXES:
            app.router.add_get(prefix + "/dossiers", self._list_dossiers)
            app.router.add_get(prefix + "/dossiers/{key}", self._get_dossier)
        app.router.add_get("/dvcqg/hoso", self._national)
        app.router.add_get("/export/dossiers.csv", self._export_csv)
        return app

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.world.simulate_until(self.clock())
        scope = _scope_of(request.path)
        active = self._active(scope)
        if "slow" in active:
            await asyncio.sleep(active["slow"].delay.total_seconds())
        if "error_5xx" in active:
            status = active["error_5xx"].status
            return web.Response(
                status=status,
                text=_page(f"{status} Service Unavailable", f"<h1>{status}</h1><p>Service Unavailable</p>"),
                content_type="text/html",
                headers={"Retry-After": "60"} if status == 503 else None,
            )
        if "maintenance" in active:
            return web.Response(
                text=_page(
                    MAINTENANCE_MARKER,
                    f"<h1>{MAINTENANCE_MARKER}</h1><p>Hệ thống đang được nâng cấp, bảo trì. "
                    "Quý khách vui lòng quay lại sau. Xin cảm ơn!</p>",
                ),
                content_type="text/html",
            )
        if "html_error" in active:
            return web.Response(
                text=_page(
                    "Lỗi hệ thống",
                    "<h1>Đã có lỗi xảy ra</h1><p>Không thể xử lý yêu cầu. "
                    "com.liferay.portal.kernel.exception.SystemException: "
                    "java.sql.SQLRecoverableException: IO Error: Connection reset</p>",
                ),
                content_type="text/html",
            )
        request[_FAULTS_KEY] = active
        return await handler(request)

    async def _portal(self, request: web.Request) -> web.Response:
        counts = self.world.counts_by_status()
        finished = sum(counts.get(status, 0) for status in FINISHED_STATUSES)
        body = (
            f"<header><h1>{PORTAL_MARKER}</h1><p>Cổng thông tin một cửa điện tử</p></header>"
            "<nav><a href='/motcua/dang-nhap'>Đăng nhập một cửa</a></nav>"
            f"<section><p>Hồ sơ đã tiếp nhận: {len(self.world.dossiers)}</p>"
            f"<p>Hồ sơ đã giải quyết: {finished}</p></section>"
        )
        return web.Response(text=_page(PORTAL_MARKER, body), content_type="text/html")

    def _login_form(self, error: str = "") -> str:
        notice = f"<p class='error'>{html.escape(error)}</p>" if error else ""
        return _page(
            "Đăng nhập - Hệ thống thông tin một cửa điện tử",
            "<h1>Hệ thống thông tin một cửa điện tử</h1>"
            f"{notice}<form method='post' action='/login'>"
            "<label>Tên đăng nhập <input name='username'></label>"
            "<label>Mật khẩu <input type='password' name='password'></label>"
            "<button type='submit'>Đăng nhập</button></form>",
        )

    async def _login_page(self, request: web.Request) -> web.Response:
        return web.Response(text=self._login_form(), content_type="text/html")

    async def _login(self, request: web.Request) -> web.Response:
        wants_json = request.content_type == "application/json" or "json" in request.headers.get("Accept", "")
        try:
            data: Any = (
                await request.json() if request.content_type == "application/json" else await request.post()
            )
        except (ValueError, UnicodeDecodeError):
            data = {}
        username = str(data.get("username", "")) if hasattr(data, "get") else ""
        password = str(data.get("password", "")) if hasattr(data, "get") else ""
        if not self._credentials_ok(username, password):
            if wants_json:
                return web.json_response({"error": "invalid username or password"}, status=401)
            return web.Response(
                status=401,
                text=self._login_form("Sai tên đăng nhập hoặc mật khẩu"),
                content_type="text/html",
            )
        token = secrets.token_urlsafe(24)
        self._sessions[token] = username
        if wants_json:
            response = web.json_response({"token": token, "token_type": "Bearer", "username": username})
        else:
            response = web.Response(
                text=_page(
                    "Đăng nhập thành công", "<h1>Đăng nhập thành công</h1><a href='/motcua/ho-so'>Hồ sơ</a>"
                ),
                content_type="text/html",
            )
        response.set_cookie(_SESSION_COOKIE, token, httponly=True, path="/")
        return response

    def _credentials_ok(self, username: str, password: str) -> bool:
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self._password.get_secret_value().encode())
        return user_ok and password_ok

    def _authorized(self, request: web.Request, *, basic_only: bool = False) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            username, _, password = decoded.partition(":")
            return self._credentials_ok(username, password)
        if basic_only:
            return False
        if scheme.lower() == "bearer":
            return value.strip() in self._sessions
        return request.cookies.get(_SESSION_COOKIE, "") in self._sessions

    async def _dashboard(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPFound(self.app_url)
        counts = self.world.counts_by_status()
        rows = "".join(
            f"<tr><td>{status}</td><td>{count}</td></tr>" for status, count in sorted(counts.items())
        )
        return web.Response(
            text=_page("Danh sách hồ sơ", f"<h1>Danh sách hồ sơ</h1><table>{rows}</table>"),
            content_type="text/html",
        )

    # --- APIs --------------------------------------------------------------------------------------

    def _check_api(self, request: web.Request) -> web.Response | None:
        if not self._authorized(request):
            response = _json_error(401, "Unauthorized", "authentication is required")
            response.headers["WWW-Authenticate"] = 'Basic realm="OpenCPS"'
            return response
        group_id = request.headers.get("groupId", "").strip()
        if not group_id:
            return _json_error(400, "Bad Request", "groupId header is required")
        if group_id != self.group_id:
            return _json_error(403, "Forbidden", f"no permission on group {group_id}")
        return None

    def _select(self, request: web.Request) -> list[SimDossier]:
        """The filtered dossiers for a list request; raises HTTPBadRequest with a JSON body."""
        query = request.query
        statuses = frozenset(s.strip() for s in query.get("status", "").split(",") if s.strip())
        agency_text = query.get("agency", "").strip()
        agencies = frozenset(
            a.strip() for a in agency_text.split(",") if a.strip() and a.strip().lower() != "all"
        )
        try:
            modified_from = parse_local(query["fromModifiedDate"]) if query.get("fromModifiedDate") else None
            modified_to = parse_local(query["toModifiedDate"]) if query.get("toModifiedDate") else None
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"code": 400, "message": "Bad Request", "description": str(exc)}),
                content_type="application/json",
            ) from None
        top = query.get("top", "").strip()
        return self.world.select(
            statuses=statuses,
            agencies=agencies,
            dossier_no=query.get("dossierNo", "").strip(),
            modified_from=modified_from,
            modified_to=modified_to,
            top=top if top in ("overdue", "coming", "delay") else "",
            now=self.clock(),
        )

    async def _list_dossiers(self, request: web.Request) -> web.Response:
        """OpenCPS `GET /dossiers`; without `end` (or end=0) it returns everything, like the real one."""
        if (error := self._check_api(request)) is not None:
            return error
        start = _int_param(request, "start", 0)
        end = _int_param(request, "end", 0)
        selection = self._select(request)
        total = len(selection)
        page = selection[max(start, 0) :] if end <= 0 else selection[max(start, 0) : end]
        faults = request[_FAULTS_KEY]
        if "empty" in faults:
            total, page = 0, []
        truncated = faults.get("truncated")
        if truncated is not None and truncated.variant == "short":
            page = page[: len(page) // 2]
        group_id = self.group_id
        body = b'{"total":%d,"data":[' % total + b",".join(d.item_bytes(group_id) for d in page) + b"]}"
        if truncated is not None and truncated.variant == "cut":
            body = body[: max(len(body) // 2, 1)]
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    async def _get_dossier(self, request: web.Request) -> web.Response:
        if (error := self._check_api(request)) is not None:
            return error
        dossier = self.world.get(request.match_info["key"])
        if dossier is None or "empty" in request[_FAULTS_KEY]:
            return _json_error(404, "Not Found", "dossier not found")
        return web.Response(
            body=dossier.item_bytes(self.group_id), content_type="application/json", charset="utf-8"
        )

    async def _national(self, request: web.Request) -> web.Response:
        """National sync shape (DongBoHoSoMC), 1-based `page` of `size` records, dates yyyyMMddHHmmss."""
        if not self._authorized(request):
            return _json_error(401, "Unauthorized", "authentication is required")
        page_number = max(_int_param(request, "page", 1), 1)
        size = min(max(_int_param(request, "size", 100), 1), 5000)
        selection = self._select(request)
        total = len(selection)
        page = selection[(page_number - 1) * size : page_number * size]
        faults = request[_FAULTS_KEY]
        if "empty" in faults:
            total, page = 0, []
        truncated = faults.get("truncated")
        if truncated is not None and truncated.variant == "short":
            page = page[: len(page) // 2]
        head = b'{"service":"DongBoHoSoMC","total":%d,"page":%d,"size":%d,"data":[' % (
            total,
            page_number,
            size,
        )
        body = head + b",".join(d.national_bytes() for d in page) + b"]}"
        if truncated is not None and truncated.variant == "cut":
            body = body[: max(len(body) // 2, 1)]
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    async def _export_csv(self, request: web.Request) -> web.Response:
        """An officer's CSV export: UTF-8 with BOM (so spreadsheet programs read the accents)."""
        if not self._authorized(request):
            return _json_error(401, "Unauthorized", "authentication is required")
        selection = self._select(request)
        faults = request[_FAULTS_KEY]
        if "empty" in faults:
            selection = []
        body = self.world.csv_text(selection).encode("utf-8-sig")
        if "truncated" in faults:
            body = body[: max(len(body) // 2, 1)]
        stamp = self.clock().astimezone(VN).strftime("%Y%m%d")
        return web.Response(
            body=body,
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="danh-sach-ho-so-{stamp}.csv"'},
        )

    # --- admin -------------------------------------------------------------------------------------

    def _admin_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/faults", self._admin_list)
        app.router.add_post("/faults", self._admin_set)
        app.router.add_delete("/faults", self._admin_clear)
        app.router.add_get("/state", self._admin_state)
        return app

    async def _admin_list(self, request: web.Request) -> web.Response:
        now = self.clock()
        return web.json_response(
            {
                "faults": [f.to_json() for f in self._faults if f.active(now)],
                "planned": [f.to_json() for f in self._faults if not f.active(now)],
            }
        )

    async def _admin_set(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            fault = fault_from_request(data, self.clock())
        except (ValueError, TypeError) as exc:
            message = str(exc) if not isinstance(exc, json.JSONDecodeError) else "body must be json"
            return web.json_response({"error": message}, status=400)
        fault = await self._add_fault(fault)
        return web.json_response(fault.to_json(), status=201)

    async def _admin_clear(self, request: web.Request) -> web.Response:
        cleared = await self.clear_faults(request.query.get("fault"), request.query.get("scope"))
        return web.json_response({"cleared": cleared})

    async def _admin_state(self, request: web.Request) -> web.Response:
        now = self.clock()
        self.world.simulate_until(now)
        return web.json_response(
            {
                "now": now.isoformat(),
                "now_local": format_local(now),
                "up": self.is_up,
                "dossiers": len(self.world.dossiers),
                "by_status": self.world.counts_by_status(),
                "faults": [f.to_json() for f in self._faults if f.active(now)],
                "urls": self.urls(),
            }
        )


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp exposes no public accessor for the bound socket
    assert server is not None and server.sockets  # type: ignore[union-attr]
    return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps(
                {"code": 400, "message": "Bad Request", "description": f"{name} must be an integer"}
            ),
            content_type="application/json",
        ) from None
