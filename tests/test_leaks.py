"""Nothing secret and no citizen's data leaves the daemon: a whole run of `python -m monitor run`, read back.

The daemon runs as a real subprocess at debug level against the built-in simulator and every fake gateway
(Zalo ZNS and OA through the OAuth v4 token manager, eSMS, SpeedSMS, HTTP SMS, a webhook signed with
HMAC, the log channel), with every secret configured through an environment variable or a `*_file`.
An outage and the deadline crossings of the simulator's dossiers send alerts on every channel. Error
paths run with a secret in hand: a hostile gateway echoes its key back in a 500 reply, a dossier source
carries its password in a URL that cannot connect, and a hostile dossier API echoes the Basic
credentials it got (in a 500 body, a body that is not JSON, and a date field). Then everything the
daemon let out is collected: every log line (stdout and stderr), /metrics, every API reply (error paths
included), every alert text the gateways received, every text column of the store (the outbox too: its
texts and phones are officials') and the outbox's public view (/api/v1/alerts). None of it may hold any
8 characters of a configured secret, as they are or base64-encoded (Basic auth), nor a token Zalo issued
at run time (those live in the store's kv table only), nor an applicant's name, phone, e-mail or
address from the simulated dossiers.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import signal
import socket
import sqlite3
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from monitor.config import load_config_text
from monitor.config_secrets import config_secrets
from monitor.simulator import PORTAL_MARKER, Simulator
from monitor.simulator.catalog import UNITS
from probes.sources.mapping import DateParser
from tests.fakes import FakeServer
from tests.fakes.esms import FakeEsms
from tests.fakes.speedsms import FakeSpeedSms
from tests.fakes.webhook import FakeWebhookReceiver
from tests.fakes.zalo import FakeZalo
from tests.ops_stack import ShiftedClock

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0
ZALO_USER = "zuid-truc-kt"


def _secret(label: str) -> str:
    return f"{label}-{secrets.token_hex(10)}"


class HostileGateway(FakeServer):
    """An SMS gateway that fails with HTTP 500 and echoes the whole request (key included) in its body;
    and an OpenCPS dossier API that echoes the Basic credentials it got: in a 500 body, in a body that is
    not JSON, and as the value of a date field (a parse error that quotes values would carry it)."""

    def __init__(self) -> None:
        super().__init__()
        self.replies = 0
        self.listings = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/send", self._send)
        app.router.add_get("/o/rest/v2/dossiers", self._dossiers)

    async def _send(self, request: web.Request) -> web.Response:
        self.replies += 1
        echo = {"error": "internal", "headers": dict(request.headers), "body": (await request.text())}
        return web.json_response(echo, status=500)

    async def _dossiers(self, request: web.Request) -> web.Response:
        self.listings += 1
        credentials = request.headers.get("Authorization", "")
        turn = self.listings % 5
        if turn == 0:
            return web.json_response({"error": f"denied for {credentials}"}, status=500)
        if turn == 1:
            return web.Response(text=f"<html>Sai {credentials}</html>", content_type="application/json")
        if turn == 2:
            # Not a number where OpenCPS has one, and a record that is not an object.
            return web.json_response({"total": credentials, "data": [credentials]})
        if turn == 3:
            return web.json_response({"total": 1, "data": {credentials: credentials}})
        dossier = {"dossierNo": "H12.99-261201-0001", "dueDate": credentials, "receiveDate": credentials}
        return web.json_response({"total": 1, "data": [dossier]})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Secrets:
    """Every secret of the run, and how it reaches the daemon."""

    def __init__(self) -> None:
        self.api_token = _secret("api-token")
        self.source_password = _secret("nguon-mk")
        self.zalo_app_secret = _secret("zalo-app-secret")
        self.esms_api_key = _secret("esms-api-key")
        self.esms_secret_key = _secret("esms-secret-key")
        self.speedsms_token = _secret("speedsms-token")
        self.http_sms_secret = _secret("http-sms-secret")
        self.webhook_secret = _secret("webhook-hmac")
        self.hostile_secret = _secret("hostile-key")
        self.refresh_token = ""  # issued by the fake Zalo once it runs

    def values(self) -> dict[str, str]:
        plain = {name: value for name, value in vars(self).items() if value}
        return {
            **plain,
            "source basic auth (base64)": base64.b64encode(f"admin:{self.source_password}".encode()).decode(),
            "speedsms basic auth (base64)": base64.b64encode(f"{self.speedsms_token}:x".encode()).decode(),
        }


def _write_secret(folder: Path, name: str, value: str) -> str:
    path = folder / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def _config(
    tmp_path: Path,
    port: int,
    keys: Secrets,
    sim: Simulator,
    gateways: dict[str, Any],
) -> dict[str, Any]:
    """The daemon's config: secrets as ${LEAK_*} variables or *_file paths, never inline."""
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    zalo, esms, speedsms, receiver, hostile = (
        gateways[name] for name in ("zalo", "esms", "speedsms", "receiver", "hostile")
    )
    fast = {"interval": "0.5s", "timeout": "0.4s", "failure_threshold": 2, "success_threshold": 1}
    zalo_app = {
        "app_id": zalo.app_id,
        "secret_key": "${LEAK_ZALO_SECRET}",
        "refresh_token_file": _write_secret(folder, "zalo-refresh", keys.refresh_token),
        "oauth_url": zalo.oauth_url,
        "timeout": "2s",
    }
    templates = {
        kind: {"template_id": "T100", "params": {"ma_ho_so": "code", "han": "due"}}
        for kind in ("due_soon", "last_warning", "overdue")
    }
    channels = [
        {"name": "zns", "type": "zalo_zns", **zalo_app, "zns_url": zalo.zns_url, "templates": templates},
        {"name": "oa", "type": "zalo_oa", **zalo_app, "oa_url": zalo.oa_url},
        {
            "name": "esms",
            "type": "sms_esms",
            "url": esms.url,
            "api_key": "${LEAK_ESMS_API_KEY}",
            "secret_key_file": _write_secret(folder, "esms-secret", keys.esms_secret_key),
            "brandname": "TTHC",
            "timeout": "2s",
        },
        {
            "name": "speedsms",
            "type": "sms_speedsms",
            "url": speedsms.url,
            "token_file": _write_secret(folder, "speedsms-token", keys.speedsms_token),
            "timeout": "2s",
        },
        {
            "name": "httpsms",
            "type": "sms_http",
            "url": receiver.base_url + "/sms",
            "secret": "${LEAK_HTTP_SMS_SECRET}",
            "headers": {"Authorization": "Bearer {secret}"},
            "body": {"to": "{phone}", "msg": "{text}", "ref": "{id}"},
            "success": {"json_path": "result", "equals": "ok"},
            "timeout": "2s",
        },
        {
            "name": "hook",
            "type": "webhook",
            "url": receiver.url,
            "secret_file": _write_secret(folder, "webhook-secret", keys.webhook_secret),
            "timeout": "2s",
        },
        {"name": "log", "type": "log", "level": "info"},
        {
            "name": "hostile",
            "type": "sms_http",
            "url": hostile.base_url + "/send",
            "secret": "${LEAK_HOSTILE_SECRET}",
            "headers": {"X-Api-Key": "{secret}"},
            "body": {"to": "{phone}", "msg": "{text}", "key": "{secret}"},
            "timeout": "2s",
        },
    ]
    # One person per channel: empty units = every unit, so every crossing and outage reaches each.
    people = [
        {
            "id": f"truc-{channel['name']}",
            "name": f"Cán bộ trực {channel['name']}",
            "phone": f"09120000{index:02d}",
            "zalo_user_id": ZALO_USER,
            # ZNS sends approved templates only, which exist for deadlines, not for outages.
            "roles": ["unit_head"] if channel["name"] == "zns" else ["unit_head", "it_oncall"],
            "channels": [channel["name"]],
        }
        for index, channel in enumerate(channels)
    ]
    source = {
        "type": "opencps",
        "group_id": sim.group_id,
        "username": "admin",
        "password_file": _write_secret(folder, "source-password", keys.source_password),
        "interval": "1s",
        "full_interval": "3s",
    }
    basic = base64.b64encode(f"admin:{keys.source_password}".encode()).decode()
    return {
        "timezone": "Asia/Ho_Chi_Minh",
        "listen": f"127.0.0.1:{port}",
        "api": {"token": "${LEAK_API_TOKEN}"},
        "store": {"path": str(tmp_path / "monitor.db"), "flush_interval": "0.2s"},
        "scheduler": {"start_jitter": 0, "shutdown_grace": "2s"},
        "logging": {"level": "debug", "format": "json"},
        "targets": [
            {
                "name": "portal",
                "type": "http",
                "url": sim.portal_url,
                "dossier_system": True,
                "expect": {"status": [200], "body_contains": [PORTAL_MARKER]},
                **fast,
            },
            {
                "name": "dossier-api",
                "type": "http",
                "url": f"{sim.api_base}/dossiers?start=0&end=1",
                "headers": {"groupId": sim.group_id, "Authorization": f"Basic {basic}"},
                "expect": {"status": [200]},
                **fast,
            },
        ],
        "dossiers": {
            "sources": [
                {"name": "motcua", "base_url": sim.api_base, **source},
                # Nothing listens there: every sync fails with the password inside the URL in hand.
                {
                    "name": "motcua-cu",
                    "base_url": f"http://admin:{keys.source_password}@127.0.0.1:{_free_port()}/o/rest/v2",
                    **source,
                },
                {"name": "motcua-dich", "base_url": hostile.base_url + "/o/rest/v2", **source},
            ],
            "thresholds": ["2d", "4h"],
            "aggregate_interval": "1s",
        },
        "alerts": {
            "channels": channels,
            "directory": {
                "units": [{"code": unit.code, "name": unit.name} for unit in UNITS],
                "people": people,
            },
            "rules": [
                {
                    "name": "deadlines",
                    "on": ["due_soon", "last_warning", "overdue"],
                    "to": ["unit_head"],
                    "quiet_hours": False,
                },
                {
                    "name": "system",
                    "on": ["target_down", "target_recovered"],
                    "to": ["it_oncall"],
                    "quiet_hours": False,
                    "group_wait": "0s",
                },
            ],
            "quiet_hours": None,
            "delivery": {"poll_interval": "0.2s", "backoff_base": "0.2s"},
        },
    }


def _environment(keys: Secrets) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "LEAK_API_TOKEN": keys.api_token,
        "LEAK_ZALO_SECRET": keys.zalo_app_secret,
        "LEAK_ESMS_API_KEY": keys.esms_api_key,
        "LEAK_HTTP_SMS_SECRET": keys.http_sms_secret,
        "LEAK_HOSTILE_SECRET": keys.hostile_secret,
    }


async def _until(predicate: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def _applicant_data(sim: Simulator) -> set[str]:
    """Every applicant's name, phone, e-mail and address in the simulated world (a superset of what was
    served)."""
    values: set[str] = set()
    officers: set[str] = set()
    for dossier in sim.world.dossiers:
        applicant = dossier.applicant
        values.update(v for v in (applicant.name, applicant.phone, applicant.email, applicant.address) if v)
        officers.add(dossier.assignee.name)
    # Names come from one pool: an applicant may share an officer's name, and officers' names are the
    # assignees the daemon rightly shows.
    return values - officers


def _store_text(path: Path) -> Iterator[tuple[str, str]]:
    """(table.column, text) for every text value in the store."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            if table.startswith("sqlite_"):
                continue
            columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                for (value,) in conn.execute(
                    f'SELECT "{column}" FROM "{table}" WHERE typeof("{column}") = \'text\''
                ):
                    yield f"{table}.{column}", value
    finally:
        conn.close()


async def _api_replies(base: str, keys: Secrets, code: str) -> dict[str, tuple[int, str]]:
    """Every API route, with and without the token, with bad parameters and unknown names."""
    auth = {"Authorization": f"Bearer {keys.api_token}"}
    wrong = {"Authorization": f"Bearer {keys.api_token}x"}
    calls: list[tuple[str, str, dict[str, str]]] = []
    paths = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/status",
        "/api/v1/targets",
        "/api/v1/targets/portal/uptime",
        "/api/v1/targets/portal/uptime?window=oops",
        "/api/v1/targets/khong-co/uptime",
        "/api/v1/incidents",
        "/api/v1/incidents?since=-3x&limit=0",
        "/api/v1/incidents?target=portal",
        "/api/v1/dossiers",
        "/api/v1/dossiers?state=overdue&limit=500",
        "/api/v1/dossiers?state=chua-biet&cursor=%%%",
        f"/api/v1/dossiers/{code}",
        "/api/v1/dossiers/H12-khong-co",
        "/api/v1/units",
        "/api/v1/overdue-during-outage",
        "/api/v1/alerts",
        "/api/v1/alerts?status=sent&limit=1000",
        "/api/v1/alerts?status=nope",
        "/api/v1/khong-co",
    ]
    for path in paths:
        calls += [("GET", path, auth), ("GET", path, {}), ("GET", path, wrong)]
    calls += [("POST", "/api/v1/reload", {}), ("POST", "/api/v1/reload", wrong)]
    replies: dict[str, tuple[int, str]] = {}
    async with aiohttp.ClientSession() as session:
        for method, path, headers in calls:
            async with session.request(method, base + path, headers=headers) as reply:
                given = "token" if headers is auth else "wrong token" if headers else "no token"
                label = f"{method} {path} ({given})"
                replies[label] = (reply.status, await reply.text())
    return replies


_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{12,}")


def _decoded(text: str) -> str:
    """Every base64 run in `text` decoded at each of the four alignments (a cut excerpt of an encoded
    credential still decodes to part of the secret)."""
    pieces = []
    for run in _BASE64_RUN.findall(text):
        for offset in range(4):
            chunk = run[offset:]
            chunk = chunk[: len(chunk) // 4 * 4]
            try:
                pieces.append(
                    base64.b64decode(chunk, altchars=b"-_" if "-" in chunk else None).decode("latin-1")
                )
            except ValueError:
                continue
    return "\n".join(pieces)


def _secret_leaks(haystack: dict[str, str], keys: Secrets) -> list[str]:
    """A secret counts as leaked when any 8 characters of its random part show, as they are or inside
    something base64-encoded: an excerpt cut short defeats scrubbing by whole value."""
    windows = {
        window: name
        for name, value in keys.values().items()
        if "base64" not in name
        for random_part in [value[-20:]]
        for window in (random_part[i : i + 8] for i in range(len(random_part) - 7))
    }
    found = []
    for where, text in haystack.items():
        for form, body in (("as is", text), ("base64-encoded", _decoded(text))):
            for window, name in windows.items():
                index = body.find(window)
                if index >= 0:
                    excerpt = body[max(0, index - 60) : index + 70] if form == "as is" else window
                    found.append(f"{name} ({form}) in {where}: ...{excerpt!r}...")
                    break
    return found


def _find(haystack: dict[str, str], needles: dict[str, str]) -> list[str]:
    found = []
    for where, text in haystack.items():
        for what, needle in needles.items():
            # Digits-only needles (phones) must not match inside longer numbers (timestamps, counters).
            pattern = rf"(?<!\d){re.escape(needle)}(?!\d)" if needle.isdigit() else re.escape(needle)
            match = re.search(pattern, text)
            if match:
                start = max(0, match.start() - 80)
                found.append(f"{what} in {where}: ...{text[start : match.end() + 80]!r}...")
    return found


async def test_a_whole_run_leaks_no_secret_and_no_citizen_data(tmp_path: Path) -> None:
    """Logs, metrics, API replies, alert texts and the store hold no secret and no applicant data."""
    keys = Secrets()
    clock = ShiftedClock(timedelta(days=10))
    sim = Simulator(
        seed=11, clock=clock, dossier_count=200, password=keys.source_password, state_dir=tmp_path / "sim"
    )
    gateways: dict[str, Any] = {
        "zalo": FakeZalo(secret_key=keys.zalo_app_secret),
        "esms": FakeEsms(api_key=keys.esms_api_key, secret_key=keys.esms_secret_key),
        "speedsms": FakeSpeedSms(token=keys.speedsms_token),
        "receiver": FakeWebhookReceiver(secret=keys.webhook_secret),
        "hostile": HostileGateway(),
    }
    await sim.start()
    for gateway in gateways.values():
        await gateway.start()
    zalo: FakeZalo = gateways["zalo"]
    zalo.followers.add(ZALO_USER)
    keys.refresh_token = zalo.issue_refresh_token()
    port = _free_port()
    config = tmp_path / "monitor.yaml"
    config.write_text(
        yaml.safe_dump(_config(tmp_path, port, keys, sim, gateways), allow_unicode=True), "utf-8"
    )
    stdout, stderr = tmp_path / "daemon.out", tmp_path / "daemon.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "--config", str(config),
            stdout=out, stderr=err, cwd=tmp_path, env=_environment(keys),
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    esms, speedsms, receiver, hostile = (gateways[n] for n in ("esms", "speedsms", "receiver", "hostile"))
    try:
        # The world catches up ten days at once: dossiers cross their thresholds; then the portal fails.
        clock.behind = timedelta(0)
        await sim.advance()
        await sim.set_fault("error_5xx", "portal")
        channels_reached = {
            "zalo zns": lambda: any(m["api"] == "zns" for m in zalo.messages),
            "zalo oa": lambda: any(m["api"] == "oa" for m in zalo.messages),
            "esms": lambda: bool(esms.messages),
            "speedsms": lambda: bool(speedsms.messages),
            "http sms": lambda: bool(receiver.sms),
            "webhook": lambda: bool(receiver.accepted),
            "hostile gateway": lambda: hostile.replies >= 1,
            "hostile dossier api, every reply": lambda: hostile.listings >= 5,
            "log channel": lambda: "alert_dry_run" in stdout.read_text() + stderr.read_text(),
        }
        for name, reached in channels_reached.items():
            await _until(reached, f"an alert through {name}")
        assert receiver.bad_signatures == 0
        auth = {"Authorization": f"Bearer {keys.api_token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(base + "/api/v1/dossiers", headers=auth) as reply,
        ):
            code = (await reply.json())["dossiers"][0]["code"]
        await sim.clear_faults()
        replies = await _api_replies(base, keys, code)
    finally:
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(daemon.wait(), 30)
        for gateway in gateways.values():
            await gateway.stop()
        await sim.stop()
    assert exit_code == 0, stderr.read_text()[-3000:]
    assert {status for status, _ in replies.values()} >= {200, 400, 401, 404}
    assert all(status < 500 for status, _ in replies.values()), replies

    log = stdout.read_text(encoding="utf-8") + stderr.read_text(encoding="utf-8")
    # Both error paths with a secret in hand ran and were logged.
    assert "motcua-cu" in log and "motcua-dich" in log and "hostile" in log
    haystack: dict[str, str] = {"daemon log": log}
    haystack.update({f"API {label} -> {status}": body for label, (status, body) in replies.items()})
    alert_texts = [
        *(str(m.get("template_data")) + str(m.get("text")) for m in zalo.messages),
        *(m["content"] for m in esms.messages),
        *(m["content"] for m in speedsms.messages),
        *(str(item["fields"].get("msg")) for item in receiver.sms),
        *(str(item) for item in receiver.accepted),
    ]
    haystack.update({f"alert text {index}": text for index, text in enumerate(alert_texts)})
    for where, text in _store_text(tmp_path / "monitor.db"):
        haystack[f"store {where}"] = haystack.get(f"store {where}", "") + "\n" + text
    leaks = _find(haystack, keys.values()) + _secret_leaks(haystack, keys)
    # Tokens Zalo issued at run time live in the store's kv table (0600), nowhere else.
    issued = {f"zalo token {token[:3]}": token for token in (*zalo.access_tokens, *zalo.valid_refresh_tokens)}
    outside_kv = {where: text for where, text in haystack.items() if not where.startswith("store kv.")}
    leaks += _find(outside_kv, issued)
    citizens = {f"applicant data {value!r}": value for value in _applicant_data(sim)}
    leaks += _find(haystack, citizens)
    assert not leaks, "\n".join(leaks[:40])


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test talks to 127.0.0.1 only, whatever proxy the environment names."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_a_long_bad_value_is_described_not_cut() -> None:
    """A date that cannot be parsed is quoted whole when short, and only by its length when long."""
    parser = DateParser(["%d/%m/%Y"], "Asia/Ho_Chi_Minh")
    with pytest.raises(ValueError, match=r"cannot parse '31/02/2026'"):
        parser.parse("31/02/2026")
    echoed = "Basic " + base64.b64encode(b"admin:mat-khau-nguon-2026").decode()
    with pytest.raises(ValueError) as info:
        parser.parse(echoed)
    assert f"a text of {len(echoed)} characters" in str(info.value)
    assert "YWRt" not in str(info.value)


def test_basic_auth_credentials_are_scrubbed_like_the_password() -> None:
    """The base64 of a source's `username:password` is one of the secrets logging scrubs."""
    config = load_config_text(
        yaml.safe_dump(
            {
                "dossiers": {
                    "sources": [
                        {
                            "name": "motcua",
                            "type": "opencps",
                            "base_url": "http://127.0.0.1:9/o/rest/v2",
                            "group_id": "35402",
                            "username": "admin",
                            "password": "mat-khau-nguon",
                        }
                    ]
                }
            }
        ),
        environ={},
    )
    assert base64.b64encode(b"admin:mat-khau-nguon").decode() in config_secrets(config)


# Requests aiohttp's parser refuses, each carrying the API token where the refusal quotes it.
_MALFORMED = (
    b"GET /api/v1/targets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Bad: \x01{token}\r\n\r\n",
    b"GET /api/v1/targets HTTP/1.1\r\nHost: x\r\nContent-Length: 1-{token}\r\n\r\n",
    b"G\x00T /{token} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/v1/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz-{token}\r\n",
)


async def test_requests_refused_by_the_parser_do_not_log_the_token(tmp_path: Path) -> None:
    """Malformed requests carrying the API token are refused with 400 and the token is not in the log."""
    token = _secret("api-token")
    port = _free_port()
    config = tmp_path / "monitor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{port}",
                "api": {"token": "${LEAK_API_TOKEN}"},
                "store": {"path": str(tmp_path / "monitor.db")},
                "logging": {"level": "debug", "format": "json"},
            }
        ),
        "utf-8",
    )
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "--config", str(config),
            stdout=out, stderr=out, cwd=tmp_path, env={**os.environ, "LEAK_API_TOKEN": token},
        )  # fmt: skip
    try:
        await _until(lambda: "daemon_started" in log.read_text(), "the daemon to start")
        statuses = []
        for request in _MALFORMED:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request.replace(b"{token}", token.encode()))
            await writer.drain()
            statuses.append((await reader.readline()).decode().strip())
            writer.close()
            await writer.wait_closed()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 30) == 0
    assert all(" 400 " in status for status in statuses), statuses
    text = log.read_text(encoding="utf-8")
    assert "daemon_stopped" in text
    assert token[-20:-12] not in text, [line for line in text.splitlines() if token[-20:-12] in line][:3]
