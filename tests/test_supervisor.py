"""Supervision: a crashed long-lived task is logged with its traceback, restarted with backoff, counted in
tthc_task_restarts_total{task}, and named by /readyz (503) until it runs again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

from monitor.config import load_config_text
from monitor.daemon import Daemon
from monitor.supervisor import Supervisor
from tests.alert_support import new_alert


async def _eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll until `condition()` holds: the supervisor has no completion event to wait on."""
    for _ in range(int(seconds / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    assert condition()


async def test_supervisor_restarts_a_crashed_loop_with_backoff() -> None:
    """A loop that crashes twice is restarted twice (logged with its traceback), then runs on."""
    supervisor = Supervisor(first_backoff=0.05, max_backoff=0.2)
    runs: list[int] = []
    release = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise RuntimeError("boom")
        await release.wait()

    with structlog.testing.capture_logs() as logs:
        task = supervisor.spawn("flaky", flaky)
        await _eventually(lambda: "flaky" in supervisor.down())
        assert supervisor.down() == {"flaky": "RuntimeError"}
        await _eventually(lambda: len(runs) == 3)
    assert supervisor.restarts["flaky"] == 2 and supervisor.down() == {}
    crashes = [entry for entry in logs if entry["event"] == "task_crashed"]
    assert [entry["task"] for entry in crashes] == ["flaky", "flaky"]
    assert all(entry.get("exc_info") for entry in crashes), "logged with the traceback"
    release.set()
    await task
    assert supervisor.running == 0


async def test_a_crashed_probe_dispatcher_fails_readiness_until_restarted(tmp_path: Path) -> None:
    """The probe dispatcher dies on a heap entry of no known target: /readyz answers 503 naming it, the
    supervisor restarts it, /readyz is 200 again and /metrics counts the restart."""
    config = load_config_text(
        f"""
listen: 127.0.0.1:0
store: {{path: {tmp_path / "store.db"}, flush_interval: 0.05s}}
logging: {{format: json}}
targets: []
""",
        environ={},
    )
    daemon = Daemon(config)
    await daemon.start()
    statuses: list[tuple[int, dict]] = []
    try:
        async with aiohttp.ClientSession() as session:

            async def readyz() -> tuple[int, dict]:
                async with session.get(f"{daemon.base_url}/readyz") as response:
                    return response.status, await response.json()

            assert (await readyz())[0] == 200
            scheduler = daemon.scheduler
            # A heap entry whose generation matches but whose target is unknown: a KeyError in the loop.
            scheduler._generation["ghost"] = 1
            scheduler._push(asyncio.get_running_loop().time(), "ghost", 1)
            for _ in range(400):
                statuses.append(await readyz())
                if statuses[-1][0] == 503:
                    break
                await asyncio.sleep(0.005)
            status, body = statuses[-1]
            assert status == 503
            assert body["checks"]["tasks_alive"] is False
            assert body["tasks_down"] == {"probe-dispatcher": "KeyError"}
            for _ in range(400):
                statuses.append(await readyz())
                if statuses[-1][0] == 200:
                    break
                await asyncio.sleep(0.01)
            assert statuses[-1][0] == 200, statuses[-1]
            async with session.get(f"{daemon.base_url}/metrics") as response:
                text = await response.text()
            assert 'tthc_task_restarts_total{task="probe-dispatcher"} 1.0' in text
            assert "tthc_store_backlog " in text
    finally:
        await daemon.stop()


async def test_a_crashed_delivery_loop_is_restarted_counted_and_keeps_delivering(tmp_path: Path) -> None:
    """The delivery worker's loop dies on a send that raised: /readyz names alert-delivery, the restart is
    counted, and an alert stored afterwards is still sent."""
    config = load_config_text(
        f"""
listen: 127.0.0.1:0
store: {{path: {tmp_path / "store.db"}, flush_interval: 0.05s}}
logging: {{format: json}}
targets: []
alerts:
  channels: [{{type: log, name: log}}]
  directory: {{people: [{{id: can-bo-07, roles: [it_oncall]}}]}}
""",
        environ={},
    )
    daemon = Daemon(config)
    await daemon.start()
    try:
        worker = daemon.alerts.worker
        assert worker is not None and daemon.alerts.outbox is not None

        async def send_that_raised() -> None:
            raise RuntimeError("a send that escaped its error handling")

        escaped = asyncio.ensure_future(send_that_raised())
        await asyncio.sleep(0)
        worker._tasks.add(escaped)  # type: ignore[arg-type]
        daemon.alerts.outbox.wakeup.set()
        async with aiohttp.ClientSession() as session:

            async def readyz() -> tuple[int, dict]:
                async with session.get(f"{daemon.base_url}/readyz") as response:
                    return response.status, await response.json()

            seen: list[tuple[int, dict]] = []
            for _ in range(400):
                seen.append(await readyz())
                if seen[-1][0] == 503:
                    break
                await asyncio.sleep(0.01)
            assert seen[-1][1]["tasks_down"] == {"alert-delivery": "RuntimeError"}
            await _eventually(lambda: daemon.alerts.worker is not None and daemon.alerts.worker.running)
            assert (await readyz())[0] == 200
            async with session.get(f"{daemon.base_url}/metrics") as response:
                assert 'tthc_task_restarts_total{task="alert-delivery"} 1.0' in await response.text()
        now = daemon.now()
        await daemon.alerts.outbox.enqueue([new_alert(1, at=now, channels=("log",))])
        await _eventually(lambda: daemon.alerts.worker is not None and daemon.alerts.worker.sent == 1)
    finally:
        await daemon.stop()
