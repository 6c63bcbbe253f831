"""The simulator's wiring: its listeners (public site, TLS twin, admin API), their lifecycle and URLs.

The public site is assembled from `monitor.simulator.site` (portal, app login, dashboard),
`monitor.simulator.apis` (the dossier listings per source format) and the fault middleware of
`monitor.simulator.fault_injection`. The TLS listener serves the same site.

`down` stops both public listeners whatever its scope (they serve every scope, and a refused connection
cannot be per-path); every other fault applies to its scope only. The admin listener never goes down.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from monitor.simulator.apis import DossierApis
from monitor.simulator.dossier import format_local
from monitor.simulator.fault_injection import MAINTENANCE_MARKER, FaultSwitches
from monitor.simulator.faults import Fault, ScheduledFault, fault_from_request, schedule_faults
from monitor.simulator.site import PORTAL_MARKER, Accounts, SitePages
from monitor.simulator.worktime import VN
from monitor.simulator.world import SimulationReport, World

__all__ = ["DEFAULT_PASSWORD", "MAINTENANCE_MARKER", "PORTAL_MARKER", "Simulator"]

log = structlog.get_logger(__name__)

DEFAULT_PASSWORD = "tthc-demo"


def _default_clock() -> datetime:
    return datetime.now(VN)


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
        self._accounts = Accounts(
            username, password if isinstance(password, SecretStr) else SecretStr(password)
        )
        self.tls = tls
        self._state_dir = state_dir
        self._own_state_dir = False
        self.tick_interval = tick_interval
        self._switches = FaultSwitches(schedule_faults(schedule, self.epoch), self.clock, self._reconcile)
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

    @property
    def username(self) -> str:
        return self._accounts.username

    def change_password(self, password: str) -> None:
        """The office changed the API account's password: the old one and every session stop working."""
        self._accounts.change_password(password)

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
        kinds = {fault.fault for fault in self._switches.active_at(now)}
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
        return self._switches.active_at(self.clock())

    @property
    def planned_faults(self) -> tuple[Fault, ...]:
        return self._switches.planned()

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
        return await self._switches.add(fault_from_request(data, self.clock()))

    async def clear_faults(self, fault: str | None = None, scope: str | None = None) -> int:
        """Clear faults (all, or those of a kind and/or scope), scheduled ones included; returns how many."""
        return await self._switches.clear(fault, scope)

    async def _reconcile(self) -> None:
        """Stop or restart the public listeners to match `down`; drop faults that have ended."""
        async with self._lock:
            now = self.clock()
            self._switches.prune(now)
            if not self._started:
                return
            want_down = any(fault.fault == "down" for fault in self._switches.active_at(now))
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
        app = web.Application(middlewares=[self._switches.middleware(self.world)])
        SitePages(self.world, self._accounts, lambda: self.app_url).add_routes(app.router)
        DossierApis(self.world, self._accounts, self.group_id, self.clock).add_routes(app.router)
        return app

    # --- admin -------------------------------------------------------------------------------------

    def _admin_app(self) -> web.Application:
        app = web.Application()
        self._switches.add_admin_routes(app.router)
        app.router.add_get("/state", self._admin_state)
        return app

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
                "faults": [f.to_json() for f in self._switches.active_at(now)],
                "urls": self.urls(),
            }
        )


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp exposes no public accessor for the bound socket
    assert server is not None and server.sockets  # type: ignore[union-attr]
    return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
