"""A store outage end to end: a real daemon on a real SQLite file, a loopback portal that goes down, a CSV
export whose dossiers cross thresholds, a fake eSMS gateway; the fault (another process's lock, a full
disk) is applied by the test while all of that happens."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import yaml
from aiohttp import web

from alerts.outbox import OutboxRow
from monitor.calendar import Calendars
from monitor.config import Config, load_config_text
from monitor.daemon import Daemon
from tests.fakes.esms import FakeEsms

__all__ = ["Outage", "OutageReport", "fault_seconds"]

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# A Wednesday, 09:00 in Vietnam: a plain working day, hours of working time ahead.
BASE = datetime(2026, 3, 4, 9, 0, tzinfo=ZONE)
UNIT = "H12.01"
DATE_FORMAT = "%d/%m/%Y %H:%M:%S"
HEADER = ["Mã hồ sơ", "Mã đơn vị", "Cán bộ", "Ngày tiếp nhận", "Ngày hẹn trả", "Trạng thái"]
# Seconds after BASE at which dossier A (tracked before the fault) crosses its 4h threshold.
CROSS_AT = 4.0
BUSY_TIMEOUT = 1.0
FLUSH_INTERVAL = 0.2


# Holds BEGIN EXCLUSIVE on the file (as an admin's `sqlite3` shell would) until its stdin closes.
WRITE_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def fault_seconds(default: float) -> float:
    """The fault's duration: TTHC_FAULT_SECONDS overrides the default run's (the issue's 30 s and 20 s)."""
    return float(os.environ.get("TTHC_FAULT_SECONDS", default))


class Portal:
    """A loopback web portal whose status the test switches."""

    def __init__(self) -> None:
        self.status = 200
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, _request: web.Request) -> web.Response:
        return web.Response(text="Cổng Dịch vụ công", status=self.status, content_type="text/html")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class OutageReport:
    """What the test measured around the fault."""

    fault_seconds: float
    healthz_slowest: float = 0.0
    readyz_statuses: Counter[int] = field(default_factory=Counter)
    # (monotonic time, /readyz status) of every poll, and when the fault ended.
    readyz_polls: list[tuple[float, int]] = field(default_factory=list)
    released_at: float = 0.0
    catch_up_seconds: float = 0.0

    def readyz_during_fault(self) -> list[int]:
        """/readyz statuses from its first 503 until the fault ended."""
        first = next((at for at, status in self.readyz_polls if status == 503), self.released_at)
        return [status for at, status in self.readyz_polls if first <= at < self.released_at]


class Outage:
    """The scenario; `run(begin_fault, end_fault)` drives it and returns what it measured."""

    def __init__(self, tmp_path: Path, store_dir: Path, esms: FakeEsms, portal: Portal) -> None:
        self.tmp_path = tmp_path
        self.store_path = store_dir / "monitor.db"
        self.csv_path = tmp_path / "export.csv"
        self.esms = esms
        self.portal = portal
        started = time.monotonic()
        # The daemon's clock: BASE plus real time elapsed, so due dates fall in working hours.
        self.clock = lambda: (BASE + timedelta(seconds=time.monotonic() - started)).astimezone(ZONE)
        self.config = self._config()
        calendars = Calendars(self.config.calendars, self.config.zone)
        self.calendar = calendars.for_dossier(UNIT, "")
        self.rows: dict[str, datetime] = {}
        self.daemon: Daemon | None = None

    def _config(self) -> Config:
        text = yaml.safe_dump(
            {
                "timezone": "Asia/Ho_Chi_Minh",
                "listen": "127.0.0.1:0",
                "store": {
                    "path": str(self.store_path),
                    "flush_interval": f"{FLUSH_INTERVAL}s",
                    "busy_timeout": f"{BUSY_TIMEOUT}s",
                },
                "scheduler": {"start_jitter": 0, "shutdown_grace": "2s"},
                "targets": [
                    {
                        "name": "portal",
                        "type": "http",
                        "url": self.portal.url,
                        "interval": "0.2s",
                        "timeout": "0.2s",
                        "failure_threshold": 2,
                        "success_threshold": 2,
                    }
                ],
                "dossiers": {
                    "sources": [
                        {
                            "name": "export",
                            "type": "csv",
                            "path": str(self.csv_path),
                            "fields": dict(
                                zip(
                                    ("code", "unit_code", "assignee_id", "received_at", "due_at", "status"),
                                    HEADER,
                                    strict=True,
                                )
                            ),
                            "date_formats": [DATE_FORMAT],
                            "status_map": {"Đang xử lý": "open"},
                            "interval": "0.5s",
                            "full_interval": "0.5s",
                            "settle": "0.05s",
                        }
                    ],
                    "thresholds": ["1d", "4h"],
                },
                "alerts": {
                    "channels": [self.esms.channel_settings()],
                    "directory": {
                        "units": [{"code": UNIT, "name": "UBND xã Tân Phú"}],
                        "people": [
                            {
                                "id": "officer-an",
                                "name": "Cán bộ An",
                                "phone": "0912000001",
                                "units": [UNIT],
                                "roles": ["officer"],
                                "channels": ["sms"],
                                "assignee_ids": ["u1"],
                            },
                            {
                                "id": "it-em",
                                "name": "Kỹ thuật Em",
                                "phone": "0912000002",
                                "roles": ["it_oncall"],
                                "channels": ["sms"],
                            },
                        ],
                    },
                    "rules": [
                        {
                            "name": "deadlines",
                            "on": ["due_soon", "last_warning", "overdue"],
                            "to": ["assignee"],
                            "channels": ["sms"],
                            "working_hours_only": False,
                            "quiet_hours": False,
                        },
                        {
                            "name": "outage",
                            "on": ["target_down", "target_recovered"],
                            "to": ["it_oncall"],
                            "channels": ["sms"],
                            "quiet_hours": False,
                            "group_wait": "0s",
                            "group_interval": "0.2s",
                        },
                    ],
                    "quiet_hours": None,
                    "delivery": {"poll_interval": "0.2s"},
                },
            },
            allow_unicode=True,
            sort_keys=False,
        )
        return load_config_text(text, environ={})

    # --- the dossier export ------------------------------------------------------------------------

    def add_dossier(self, code: str, due_at: datetime) -> None:
        """Add a dossier to the CSV export (rewritten whole, dated in the past so it is not mid-write)."""
        self.rows[code] = due_at
        lines = [",".join(HEADER)]
        received = (BASE - timedelta(days=7)).strftime(DATE_FORMAT)
        for row_code, due in self.rows.items():
            local = due.astimezone(ZONE).strftime(DATE_FORMAT)
            lines.append(",".join([row_code, UNIT, "u1", received, local, "Đang xử lý"]))
        self.csv_path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
        stamp = time.time() - 60
        os.utime(self.csv_path, (stamp, stamp))

    def due_after(self, instant: datetime, working_hours: float) -> datetime:
        """The due time `working_hours` of working time after `instant`, to the second (as the CSV has it)."""
        due = self.calendar.add_working_time(instant, hours=working_hours)
        return due.replace(microsecond=0) + timedelta(seconds=1)

    # --- observing ---------------------------------------------------------------------------------

    async def rows_sent(self) -> list[OutboxRow]:
        assert self.daemon is not None and self.daemon.alerts.outbox is not None
        return await self.daemon.alerts.outbox.list(limit=1000)

    async def wait_until(self, what: str, check: Callable[[], Awaitable[bool]], seconds: float) -> float:
        """Poll `check` until true; the seconds it took. Fails naming `what` after `seconds`."""
        began = time.monotonic()
        for _ in range(int(seconds / 0.05)):
            if await check():
                return time.monotonic() - began
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what}: not within {seconds} s; sms so far: {len(self.esms.messages)}")

    async def sent_kinds(self) -> Counter[tuple[str, str]]:
        """(kind, dossier code or target) of every alert sent."""
        found: Counter[tuple[str, str]] = Counter()
        for row in await self.rows_sent():
            if row.status.value == "sent":
                subject = row.template_params.get("code") or ("portal" if "portal" in row.text else "")
                found[(row.kind, subject)] += 1
        return found

    # --- the run -----------------------------------------------------------------------------------

    async def run(
        self,
        session: aiohttp.ClientSession,
        begin_fault: Callable[[], Awaitable[Any]],
        end_fault: Callable[[], Awaitable[Any]],
        duration: float,
    ) -> OutageReport:
        """Start, fault for `duration` seconds while the portal goes down and up and dossiers cross,
        end the fault, wait for everything to catch up, add one more dossier; the daemon is then stopped."""
        report = OutageReport(duration)
        a_crossing = self.clock() + timedelta(seconds=CROSS_AT)
        self.add_dossier("A-0001", self.due_after(a_crossing, 4))
        self.daemon = daemon = Daemon(self.config, clock=self.clock)
        await daemon.start()
        try:
            base = daemon.base_url
            # Tracked and warned at the 1d threshold before anything goes wrong.
            await self.wait_until(
                "the first due-soon sms", lambda: _has(self.sent_kinds(), ("due_soon", "A-0001")), 10
            )
            await begin_fault()
            assert self.clock() < a_crossing, "set-up took too long: A crossed 4h before the fault began"

            async def probe_health() -> None:
                while True:
                    began = time.monotonic()
                    async with session.get(f"{base}/healthz") as response:
                        assert response.status == 200
                    report.healthz_slowest = max(report.healthz_slowest, time.monotonic() - began)
                    async with session.get(f"{base}/readyz") as response:
                        report.readyz_statuses[response.status] += 1
                        report.readyz_polls.append((time.monotonic(), response.status))
                    await asyncio.sleep(0.2)

            watcher = asyncio.create_task(probe_health())
            try:
                fault_began = time.monotonic()
                self.portal.status = 500
                # First seen during the fault, already past 4h: its crossing is recorded during it.
                self.add_dossier("C-0001", self.due_after(self.clock(), 3))
                await asyncio.sleep(duration / 2)
                self.portal.status = 200
                await asyncio.sleep(max(0.0, duration - (time.monotonic() - fault_began)))
                await end_fault()
                released = report.released_at = time.monotonic()
                expected = {
                    ("target_down", "portal"),
                    ("target_recovered", "portal"),
                    ("last_warning", "A-0001"),
                    ("last_warning", "C-0001"),
                }
                await self.wait_until(
                    "every alert of the fault", lambda: _has_all(self.sent_kinds(), expected), 60
                )
                report.catch_up_seconds = time.monotonic() - released
                # Routing is alive for dossiers that arrive afterwards.
                self.add_dossier("D-0001", self.due_after(self.clock(), 3))
                await self.wait_until(
                    "the sms of a dossier added afterwards",
                    lambda: _has(self.sent_kinds(), ("last_warning", "D-0001")),
                    20,
                )
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        finally:
            await daemon.stop()
        return report


async def _has(kinds: Awaitable[Counter[tuple[str, str]]], wanted: tuple[str, str]) -> bool:
    return (await kinds)[wanted] > 0


async def _has_all(kinds: Awaitable[Counter[tuple[str, str]]], wanted: set[tuple[str, str]]) -> bool:
    found = await kinds
    return all(found[key] for key in wanted)
