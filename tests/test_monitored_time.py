"""The monitor being off is unmonitored time, not downtime: real `python -m monitor run` processes on one
SQLite file, stopped with SIGTERM or killed with -9 while their target is down, then restarted.
`tthc-monitor uptime --store`, /api/v1/targets/{name}/uptime and `tthc-monitor report --month` agree,
none counts the off period as down, and the CLI shows p50/p95 seconds into a run."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from monitor.durations import format_duration
from monitor.reports.sla import parse_month
from tests.crash_helpers import ROOT, DaemonProcess
from tests.test_daemon import Backend

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# The monitor stays off this long between runs: far more than any probe or heartbeat interval.
OFF = 3.0
HEARTBEAT = 0.3


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    server = Backend()
    await server.start()
    yield server
    await server.stop()


@dataclass(frozen=True, slots=True)
class TwoRuns:
    """A config on one store file and two daemon processes for it (killed, if still running, at the end)."""

    config: Path
    store: Path
    first: DaemonProcess
    second: DaemonProcess


@pytest.fixture
async def runs(tmp_path: Path, backend: Backend) -> AsyncIterator[TwoRuns]:
    config = _config(tmp_path, backend)
    first = DaemonProcess(config, tmp_path / "first.log")
    second = DaemonProcess(config, tmp_path / "second.log")
    try:
        yield TwoRuns(config, tmp_path / "monitor.db", first, second)
    finally:
        await first.kill()
        await second.kill()


def _config(tmp_path: Path, backend: Backend) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        f"""
listen: 127.0.0.1:0
store: {{path: {tmp_path / "monitor.db"}, flush_interval: 0.05s, heartbeat_interval: {HEARTBEAT}s}}
scheduler: {{start_jitter: 0, shutdown_grace: 1s}}
logging: {{format: json}}
targets:
  - name: portal
    type: http
    url: http://127.0.0.1:{backend.port}/
    interval: 0.3s
    timeout: 0.3s
    failure_threshold: 2
    success_threshold: 2
""",
        encoding="utf-8",
    )
    return path


async def _cli(*args: str) -> str:
    """Run the CLI without blocking the loop: the target's server runs on it and must keep answering."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0 and b"Traceback" not in err, err.decode()
    return out.decode()


@dataclass(frozen=True, slots=True)
class Printed:
    """One target's line of `tthc-monitor uptime`."""

    uptime: str
    incidents: int
    p50: str
    p95: str
    line: str


async def _uptime_cli(store: Path, month: str) -> Printed:
    lines = (await _cli("uptime", "--month", month, "--store", str(store))).splitlines()
    assert lines[1].split()[:5] == ["TARGET", "UPTIME", "%", "INCIDENTS", "DOWNTIME"], lines
    [line] = [line for line in lines[2:] if line.split()[0] == "portal"]
    # Durations hold spaces ("1h 20m"): the numbers are read from both ends.
    tokens = line.split()
    return Printed(tokens[1], int(tokens[2]), tokens[-2], tokens[-1], line)


async def _report_csv(config: Path, month: str) -> dict[str, str]:
    rows = csv.DictReader(
        io.StringIO(await _cli("report", "--month", month, "--config", str(config), "--format", "csv"))
    )
    [portal] = [row for row in rows if row["section"] == "target" and row["name"] == "portal"]
    return portal


async def _get(session: aiohttp.ClientSession, url: str, **params: str) -> dict:
    async with session.get(url, params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _wait_health(
    session: aiohttp.ClientSession, base_url: str, health: str, within: float = 10.0
) -> None:
    async with asyncio.timeout(within):
        while True:
            targets = (await _get(session, f"{base_url}/api/v1/targets"))["targets"]
            if targets and targets[0]["health"] == health:
                return
            await asyncio.sleep(0.05)


async def _incidents_when(
    session: aiohttp.ClientSession, base_url: str, ready: Callable[[list[dict]], bool], within: float = 10.0
) -> list[dict]:
    """The incidents once `ready` holds: the incident writer stores them a moment after health changes."""
    async with asyncio.timeout(within):
        while True:
            incidents = (await _get(session, f"{base_url}/api/v1/incidents"))["incidents"]
            if ready(incidents):
                return incidents
            await asyncio.sleep(0.05)


def _runs(store: Path) -> list[tuple[int, int, int | None]]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT started_at, last_seen_at, stopped_at FROM monitor_runs ORDER BY id"
        ).fetchall()


def _month() -> tuple[str, dict[str, str]]:
    month = datetime.now(ZONE).strftime("%Y-%m")
    span = parse_month(month).span(ZONE)
    return month, {"from": span.start.isoformat(), "to": span.end.isoformat()}


async def _start_then_down(
    daemon: DaemonProcess, session: aiohttp.ClientSession, backend: Backend
) -> tuple[str, float]:
    """Start the daemon, let it see the target up, then break the target until it is DOWN; the daemon's
    address and the wall-clock time the target broke."""
    base = await daemon.start()
    await _wait_health(session, base, "up")
    await asyncio.sleep(0.5)
    backend.status = 503
    down_at = time.time()
    await _wait_health(session, base, "down")
    return base, down_at


async def _stop(daemon: DaemonProcess, how: int) -> float:
    """SIGTERM (a clean stop) or SIGKILL; the wall-clock time the signal went."""
    sent = time.time()
    daemon.send_signal(how)
    code = await daemon.wait(15)
    assert code == (0 if how == signal.SIGTERM else -signal.SIGKILL), daemon.log()[-3000:]
    return sent


async def test_sigterm_while_down_then_restart_still_down_continues_one_incident(
    runs: TwoRuns, backend: Backend
) -> None:
    """Down, SIGTERM, 3 s off, restart still down, recovery: one incident (the same id), the 3 s are
    unmonitored in the CLI, the API and the report, and none of them counts them as down."""
    config, store = runs.config, runs.store
    month, window = _month()
    first, second = runs.first, runs.second
    async with aiohttp.ClientSession() as session:
        base, down_at = await _start_then_down(first, session, backend)
        [opened] = await _incidents_when(session, base, lambda found: len(found) == 1)
        await asyncio.sleep(1.0)
        stopped = await _stop(first, signal.SIGTERM)
        assert _runs(store)[0][2] is not None, "a clean stop records stopped_at"
        await asyncio.sleep(OFF)

        base = await second.start()
        [continued] = await _incidents_when(session, base, lambda found: bool(found) and found[0]["open"])
        assert continued["id"] == opened["id"] and continued["open"], "the same incident goes on"
        backend.status = 200
        up_at = time.time()
        await _wait_health(session, base, "up")
        await asyncio.sleep(0.5)

        [closed] = await _incidents_when(session, base, lambda found: not found[0]["open"])
        assert closed["id"] == opened["id"] and not closed["open"]
        api = await _get(session, f"{base}/api/v1/targets/portal/uptime", **window)
        printed = await _uptime_cli(store, month)
        runs = _runs(store)
        gap = (runs[1][0] - runs[0][2]) / 1000
        assert OFF <= gap <= time.time() - stopped

        # The off time is unmonitored, not down: the outage lasted up_at - down_at on the wall clock,
        # the gap of it is out of the downtime.
        assert api["unmonitored_seconds"] == round(gap, 3)
        assert 1.0 < api["downtime_seconds"] < up_at - down_at - gap + 1.0
        assert api["incidents"] == printed.incidents == 1
        # The CLI reads the daemon's open hour like the API does: latency figures seconds into a run.
        assert printed.p50 != "-" and printed.p95 != "-", printed.line
        # (Equal figures at one instant: tests/test_heartbeat.py; here probes keep coming between reads.)
        assert 0 <= int(printed.p50) <= int(printed.p95) and api["latency_p50_seconds"] is not None
        assert format_duration(api["downtime_seconds"]) in printed.line
        assert format_duration(api["unmonitored_seconds"]) in printed.line

        await _stop(second, signal.SIGTERM)
    assert any(e.get("event") == "incident_continued" for e in second.log_events())
    # Stopped for good: the CLI and the report read the same fixed figures.
    after = await _uptime_cli(store, month)
    report = await _report_csv(config, month)
    assert float(report["downtime_seconds"]) == pytest.approx(api["downtime_seconds"], abs=1e-3)
    # The CLI prints 3 decimals, the CSV 4: equal up to that rounding.
    assert float(after.uptime) == pytest.approx(float(report["uptime_percent"]), abs=0.0011)
    assert after.incidents == int(report["incidents"]) == 1
    # Unmonitored now also counts the time since the last stop (the monitor is off again).
    assert float(report["unmonitored_seconds"]) > gap


async def test_kill_9_while_down_then_restart_after_recovery_ends_the_incident_at_the_last_probe(
    runs: TwoRuns, backend: Backend
) -> None:
    """Down, kill -9, the target recovers while the monitor is off, restart: the incident ends at the
    last probe before the kill, the run at its last heartbeat, and the off time is not down."""
    config, store = runs.config, runs.store
    month, window = _month()
    first, second = runs.first, runs.second
    async with aiohttp.ClientSession() as session:
        base, down_at = await _start_then_down(first, session, backend)
        # Long enough that the last heartbeat before the kill (at most ~0.35 s old) is well into the outage.
        await asyncio.sleep(1.5)
        killed = await _stop(first, signal.SIGKILL)
        assert _runs(store)[0][2] is None, "a killed run has no stopped_at"
        backend.status = 200
        await asyncio.sleep(OFF)

        base = await second.start()
        await _wait_health(session, base, "up")
        runs = _runs(store)
        # The killed run was closed at its last heartbeat when the next one started.
        assert runs[0][2] == runs[0][1] and runs[0][1] / 1000 <= killed
        [incident] = (await _get(session, f"{base}/api/v1/incidents"))["incidents"]
        assert not incident["open"]
        ended = datetime.fromisoformat(incident["ended_at"])
        assert ended <= datetime.fromtimestamp(killed, UTC), "ended at the last probe before the kill"
        assert incident["duration_seconds"] < killed - down_at + 0.5
        await asyncio.sleep(1.0)

        api = await _get(session, f"{base}/api/v1/targets/portal/uptime", **window)
        printed = await _uptime_cli(store, month)
        gap = (runs[1][0] - runs[0][2]) / 1000
        assert api["unmonitored_seconds"] == round(gap, 3) and gap >= OFF
        assert 0.5 < api["downtime_seconds"] < killed - down_at + 0.5
        assert printed.incidents == api["incidents"] == 1
        assert printed.p50 != "-" and printed.p95 != "-", printed.line
        assert format_duration(api["downtime_seconds"]) in printed.line
        await _stop(second, signal.SIGTERM)
    report = await _report_csv(config, month)
    after = await _uptime_cli(store, month)
    assert float(report["downtime_seconds"]) == pytest.approx(api["downtime_seconds"], abs=1e-3)
    # The CLI prints 3 decimals, the CSV 4: equal up to that rounding.
    assert float(after.uptime) == pytest.approx(float(report["uptime_percent"]), abs=0.0011)
