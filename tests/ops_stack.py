"""The whole monitoring stack in one test: the simulator, fake Zalo and eSMS gateways, the daemon
in-process, and the real `prometheus` binary scraping it every second with the shipped rules loaded.

`OpsStack` also makes the events whose metrics only exist once they happened: returned dossiers between
two scrapes, an outage of a dossier-system target, a dossier turning overdue during it, Zalo refusing a
phone number (fallback to SMS) and SMS refusing it too (failed).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import yaml

import monitor.daemon
from monitor.config import load_config_text
from monitor.daemon import Daemon
from monitor.model import Health
from monitor.simulator import DEFAULT_PASSWORD, PORTAL_MARKER, Simulator
from monitor.simulator.catalog import UNITS
from tests.fakes.esms import FakeEsms
from tests.fakes.zalo import FakeZalo
from tests.prometheus_server import PrometheusServer, prometheus_binary

__all__ = ["ROOT", "OpsStack", "ShiftedClock", "rule_files_every_second"]

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "prometheus"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
# The simulator starts this far in the past and catches up at once: dossiers get returned in between
# (ten days always hold working days, even around Tết), so the returned-dossier counters increase.
CATCH_UP = timedelta(days=10)
WAIT = 30.0


class ShiftedClock:
    """Now in Hà Nội, `behind` in the past; the test sets `behind` to zero to make the world catch up."""

    def __init__(self, behind: timedelta) -> None:
        self.behind = behind

    def __call__(self) -> datetime:
        return datetime.now(VN) - self.behind


def rule_files_every_second(workdir: Path) -> list[Path]:
    """The shipped rule files with each group's `interval` removed, so the test's 1 s global evaluation
    interval applies (recording rules run every minute in production)."""
    paths = []
    for source in sorted(RULES.glob("*.rules.yml")):
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        for group in document["groups"]:
            group.pop("interval", None)
        target = workdir / source.name
        target.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
        paths.append(target)
    return paths


def _basic() -> str:
    return base64.b64encode(f"admin:{DEFAULT_PASSWORD}".encode()).decode()


def _phone(index: int) -> str:
    return f"0913{index:06d}"


def _both_forms(phone: str) -> set[str]:
    return {phone, "84" + phone[1:]}


def _config(tmp_path: Path, sim: Simulator, zalo: FakeZalo, esms: FakeEsms) -> dict[str, Any]:
    fast = {"interval": "0.5s", "timeout": "0.4s", "failure_threshold": 2, "success_threshold": 1}
    heads = [
        {
            "id": f"head-{index}",
            "name": f"Trưởng {unit.name}",
            "phone": _phone(index),
            "units": [unit.code],
            "roles": ["unit_head"],
            "channels": ["zalo", "sms"],
        }
        for index, unit in enumerate(UNITS)
    ]
    templates = {
        kind: {"template_id": "T100", "params": {"ma_ho_so": "code", "han": "due"}}
        for kind in ("due_soon", "last_warning", "overdue")
    }
    return {
        "timezone": "Asia/Ho_Chi_Minh",
        "listen": "127.0.0.1:0",
        "store": {"path": str(tmp_path / "monitor.db"), "flush_interval": "0.2s"},
        "scheduler": {"start_jitter": 0, "shutdown_grace": "2s"},
        "logging": {"level": "warning", "format": "json"},
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
                "name": "portal-https",
                "type": "http",
                "url": sim.https_url,
                "dossier_system": True,
                "tls": {"ca_file": str(sim.ca_file)},
                **fast,
            },
            {
                "name": "dossier-api",
                "type": "http",
                "url": f"{sim.api_base}/dossiers?start=0&end=1",
                "dossier_system": True,
                "headers": {"groupId": sim.group_id, "Authorization": f"Basic {_basic()}"},
                "expect": {"status": [200], "body_matches": ['"total"\\s*:']},
                **fast,
            },
            {"name": "motcua-db", "type": "tcp", "host": "127.0.0.1", "port": sim.port, **fast},
        ],
        "dossiers": {
            "sources": [
                {
                    "name": "motcua",
                    "type": "opencps",
                    "base_url": sim.api_base,
                    "group_id": sim.group_id,
                    "username": "admin",
                    "password": DEFAULT_PASSWORD,
                    "interval": "1s",
                    "full_interval": "2s",
                }
            ],
            "thresholds": ["2d", "4h"],
            "aggregate_interval": "1s",
        },
        "alerts": {
            "channels": [
                {
                    "name": "zalo",
                    "type": "zalo_zns",
                    **zalo.channel_settings(),
                    "timeout": "2s",
                    "templates": templates,
                },
                esms.channel_settings(timeout="2s"),
            ],
            "directory": {
                "units": [{"code": unit.code, "name": unit.name} for unit in UNITS],
                "people": [
                    *heads,
                    {"id": "it", "name": "Trực CNTT", "phone": "0987000001", "roles": ["it_oncall"]},
                ],
            },
            "rules": [
                {
                    "name": "deadlines",
                    "on": ["due_soon", "last_warning", "overdue"],
                    "to": ["unit_head"],
                    "channels": ["zalo", "sms"],
                    "quiet_hours": False,
                },
                {
                    "name": "system",
                    "on": ["target_down", "target_recovered"],
                    "to": ["it_oncall"],
                    "channels": ["sms"],
                    "quiet_hours": False,
                },
            ],
            "quiet_hours": None,
            "delivery": {"poll_interval": "0.2s", "fallback_after": 1, "backoff_base": "0.2s"},
        },
    }


class OpsStack:
    """`async with OpsStack(tmp_path, monkeypatch) as stack:` everything runs; see the module docstring."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        prometheus_binary()  # skip before starting anything where Prometheus is absent
        # The uptime gauges are refreshed every minute; the test cannot wait that long.
        monkeypatch.setattr(monitor.daemon, "UPTIME_REFRESH_SECONDS", 1.0)
        self.tmp_path = tmp_path
        self.clock = ShiftedClock(CATCH_UP)
        self.sim = Simulator(seed=5, clock=self.clock, dossier_count=300, state_dir=tmp_path / "sim")
        self.zalo = FakeZalo()
        self.esms = FakeEsms()
        self.daemon: Daemon | None = None
        self.prometheus: PrometheusServer | None = None
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OpsStack:
        try:
            return await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)  # nothing half-started outlives the test
            raise

    async def _start(self) -> OpsStack:
        await self.sim.start()
        await self.zalo.start()
        await self.esms.start()
        # Zalo refuses the first three unit heads' numbers (fallback to SMS); SMS refuses the first (failed).
        for index in range(3):
            self.zalo.invalid_phones |= _both_forms(_phone(index))
        self.esms.blocked_phones |= _both_forms(_phone(0))
        text = yaml.safe_dump(_config(self.tmp_path, self.sim, self.zalo, self.esms), allow_unicode=True)
        daemon = Daemon(load_config_text(text, environ={}))
        await daemon.start()
        self.daemon = daemon
        assert daemon.listen_address is not None
        host, port = daemon.listen_address
        self.prometheus = PrometheusServer(
            self.tmp_path / "prometheus", f"{host}:{port}", rule_files_every_second(self.tmp_path)
        )
        await self.prometheus.start()
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.session is not None:
            await self.session.close()
        if self.prometheus is not None:
            await self.prometheus.stop()
        if self.daemon is not None:
            await self.daemon.stop()
        await self.esms.stop()
        await self.zalo.stop()
        await self.sim.stop()

    # --- waiting ---------------------------------------------------------------------------------------

    async def query(self, expr: str) -> list[dict[str, Any]]:
        assert self.prometheus is not None and self.session is not None
        return await self.prometheus.query(self.session, expr)

    async def until_prometheus_has(self, expr: str, what: str) -> list[dict[str, Any]]:
        """Poll Prometheus until `expr` is non-empty."""
        return await self._until(lambda: self.query(expr), what)

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        async def check() -> list[bool]:
            return [True] if predicate() else []

        await self._until(check, what)

    async def _until(self, probe: Callable[[], Any], what: str) -> Any:
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    result = await probe()
                    if result:
                        return result
                    await asyncio.sleep(0.2)
        except TimeoutError:
            log = self.prometheus.log()[-2000:] if self.prometheus else ""
            raise AssertionError(f"timed out waiting for {what}\nprometheus log:\n{log}") from None

    # --- events ----------------------------------------------------------------------------------------

    async def catch_up(self) -> None:
        """The simulated dossier system lives through the last ten days at once: dossiers are returned."""
        self.clock.behind = timedelta(0)
        await self.sim.advance()

    async def outage(self) -> None:
        """The portal (a dossier-system target) answers 503 and goes DOWN with an open incident."""
        await self.sim.set_fault("error_5xx", "portal")
        assert self.daemon is not None
        tracker = self.daemon.scheduler.trackers["portal"]
        await self.until(lambda: tracker.health is Health.DOWN, "portal DOWN")

    def dossier_due_in(self, seconds: float) -> str:
        """An officer's open dossier gets a due time `seconds` from now (a deadline set by hand in the
        dossier system); returns its code. The daemon learns it at the next incremental sync."""
        now = self.clock()
        world = self.sim.world
        dossier = next(
            d
            for d in reversed(world.dossiers)
            if d.status == "processing" and d.due_at is not None and d.due_at > now
        )
        dossier.due_at = now + timedelta(seconds=seconds)
        dossier.extend_at = None
        dossier.touch(now)
        world.version += 1  # a new data version: cached selections are stale
        return dossier.dossier_no
