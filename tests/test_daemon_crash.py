"""kill -9 of the real daemon (`python -m monitor run`) in the middle of an alert storm, then a restart:
every alert is delivered, and the gateway sees repeats only for the sends in flight at the kill. On both
store engines (the SQLite file, a PostgreSQL schema)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from alerts.model import AlertStatus
from alerts.outbox import Outbox, OutboxRow
from monitor.simulator import Simulator
from tests.crash_helpers import DaemonProcess, SlowEsms, crash_config
from tests.store_engines import StoreFactory

CONCURRENCY = 4
# Each send is held this long at the gateway, so the storm of ~130 SMS lasts several seconds.
SEND_DELAY = 0.1
# Messages the fake must have accepted before the kill: well into the storm, far from its end.
KILL_AFTER = 15
API_KEY = "crash-esms-api-key-8Tz3q"
SECRET_KEY = "crash-esms-secret-key-Vn41k"
WAIT = 25.0


async def _outbox_rows(stores: StoreFactory, path: Path) -> list[OutboxRow]:
    store = stores.new(path, readonly=True)
    await store.open()
    try:
        return await Outbox(store).list(limit=100_000)
    finally:
        await store.close()


async def _wait_drained(session: aiohttp.ClientSession, base_url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        async with asyncio.timeout(WAIT):
            while True:
                async with session.get(f"{base_url}/api/v1/alerts", params={"limit": "1"}) as response:
                    assert response.status == 200, await response.text()
                    counts = (await response.json())["counts"]
                if counts["pending"] == 0 and counts["in_flight"] == 0 and counts["sent"] > 0:
                    return counts
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"the restarted daemon did not drain its outbox in {WAIT}s: {counts}") from None


async def test_kill_9_of_the_daemon_mid_storm_then_restart_delivers_everything(
    tmp_path: Path, stores: StoreFactory
) -> None:
    """SIGKILL the daemon while a storm of deadline SMS drains; the restarted daemon sends the rest once."""
    async with (
        Simulator(seed=11, dossier_count=400, tls=False, state_dir=tmp_path / "sim") as sim,
        SlowEsms(delay=SEND_DELAY, api_key=API_KEY, secret_key=SECRET_KEY) as esms,
    ):
        store_path = tmp_path / "monitor.db"
        config = crash_config(tmp_path, sim, esms, concurrency=CONCURRENCY, store=stores.config(store_path))
        first = DaemonProcess(config, tmp_path / "first.log")
        second = DaemonProcess(config, tmp_path / "second.log")
        try:
            await first.start()
            try:
                async with asyncio.timeout(WAIT):
                    while len(esms.messages) < KILL_AFTER:
                        assert first.running, f"the daemon ended before the kill:\n{first.log()[-3000:]}"
                        await asyncio.sleep(0.005)
            except TimeoutError:
                raise AssertionError(f"only {len(esms.messages)} sms reached the gateway") from None
            first.send_signal(signal.SIGKILL)
            assert await first.wait(10) == -signal.SIGKILL
            # Requests the dead daemon left on the wire still complete at the fake; let them land.
            await asyncio.sleep(SEND_DELAY * 3)
            at_kill = await _outbox_rows(stores, store_path)
            in_flight_at_kill = sum(row.status is AlertStatus.IN_FLIGHT for row in at_kill)
            delivered_at_kill = len(esms.messages)
            assert in_flight_at_kill <= CONCURRENCY, "claims never exceed the channel's concurrency"
            assert any(row.status is AlertStatus.PENDING for row in at_kill), "killed mid-storm"
            assert esms.duplicates == 0, "no repeats before the restart"

            await second.start()
            async with aiohttp.ClientSession() as session:
                counts = await _wait_drained(session, second.base_url)
            second.send_signal(signal.SIGINT)
            assert await second.wait(20) == 0, f"unclean shutdown:\n{second.log()[-3000:]}"
        finally:
            await first.kill()
            await second.kill()

    rows = await _outbox_rows(stores, store_path)
    assert counts == {"pending": 0, "in_flight": 0, "sent": len(rows), "failed": 0}
    assert {row.status for row in rows} == {AlertStatus.SENT}, "every alert ended sent, none failed"
    # Every row stored before the kill is still the one delivered (re-derivation at start-up reuses keys).
    assert {row.dedupe_key for row in at_kill} <= {row.dedupe_key for row in rows}
    seen = [message["request_id"] for message in esms.messages]
    assert set(seen) == {row.alert_id for row in rows}, "every alert reached the gateway"
    assert len(seen) == len(rows), "and the gateway accepted each RequestId once"
    assert delivered_at_kill < len(rows)
    # Repeats reached the gateway only for rows in flight at the kill, and it refused them by RequestId.
    assert esms.duplicates <= in_flight_at_kill <= CONCURRENCY
    second_events = second.log_events()
    # SQLite: the restarted daemon puts the rows in flight at the kill back at start. PostgreSQL: claims are
    # leased (replicas share the outbox), so it takes them over once the dead daemon's lease lapses.
    recovery = ("alerts_recovered", "alerts_taken_over")
    recovered = [event["count"] for event in second_events if event.get("event") in recovery]
    assert sum(recovered) == in_flight_at_kill
    logs = first.log() + second.log()
    assert "alert_sent" in logs
    for secret in (API_KEY, SECRET_KEY):
        assert secret not in logs, "secrets never reach the logs"
    assert not any(row.phone and row.phone in logs for row in rows), "no phone numbers in logs"
