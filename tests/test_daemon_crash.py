"""kill -9 of the real daemon (`python -m monitor run`) in the middle of an alert storm, then a restart:
every alert is delivered, and the gateway sees repeats only for the sends in flight at the kill."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import aiohttp

from alerts.model import AlertStatus
from alerts.outbox import Outbox
from monitor.simulator import Simulator
from monitor.store import SqliteStore
from tests.crash_helpers import DaemonProcess, SlowEsms, crash_config

CONCURRENCY = 4
SEND_DELAY = 0.05
# Messages the fake must have accepted before the kill: enough to be mid-storm, far from its end.
KILL_AFTER = 15
WAIT = 25.0


async def _counts(session: aiohttp.ClientSession, base_url: str) -> dict[str, int]:
    async with session.get(f"{base_url}/api/v1/alerts", params={"since": "7d", "limit": "1"}) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["counts"]


async def test_kill_9_of_the_daemon_mid_storm_then_restart_delivers_everything(tmp_path: Path) -> None:
    """SIGKILL the daemon while a storm of deadline SMS drains; the restarted daemon sends the rest."""
    async with Simulator(seed=11, dossier_count=400, tls=False, state_dir=tmp_path / "sim") as sim:
        async with SlowEsms(delay=SEND_DELAY) as esms:
            config = crash_config(tmp_path, sim, esms, concurrency=CONCURRENCY)
            first = DaemonProcess(config, tmp_path / "first.log")
            second = DaemonProcess(config, tmp_path / "second.log")
            try:
                await first.start()
                async with asyncio.timeout(WAIT):
                    while len(esms.messages) < KILL_AFTER:
                        assert first.process and first.process.returncode is None, first.log()[-3000:]
                        await asyncio.sleep(0.01)
                first.send_signal(signal.SIGKILL)
                assert await first.wait(10) == -signal.SIGKILL
                delivered_at_kill = len(esms.messages)
                # Sends the dead daemon left on the wire still complete at the fake; let them land.
                await asyncio.sleep(SEND_DELAY * 4)
                print("at kill", delivered_at_kill, len(esms.messages), esms.duplicates)

                await second.start()
                async with aiohttp.ClientSession() as session:
                    async with asyncio.timeout(WAIT):
                        while True:
                            counts = await _counts(session, second.base_url)
                            if counts["pending"] == 0 and counts["in_flight"] == 0 and counts["sent"] > 0:
                                break
                            await asyncio.sleep(0.2)
                    print("counts", counts)
                second.send_signal(signal.SIGINT)
                assert await second.wait(20) == 0, second.log()[-3000:]
            finally:
                await first.kill()
                await second.kill()
            print("total", len(esms.messages), esms.duplicates)
