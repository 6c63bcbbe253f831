"""One fault each, against a real SQLite file locked by another connection: routing survives a long stall,
a crossing is never taken as recorded before its commit, the write buffer stays bounded, and a
transaction cancelled half-way leaves nothing open behind it. SQLite only (a file lock); PostgreSQL's
counterpart, the server unreachable, is tests/test_store_outage_postgres.py."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.service import AlertService
from monitor.calendar import Calendars
from monitor.dossiers.engine import DeadlineEngine
from monitor.dossiers.store import DossierStore, SyncWrite, TrackedDossier, Upsert
from monitor.events import DossierThresholdCrossed, EventBus, IncidentOpened
from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.store import ProbeResult, SqliteStore, SqlStore
from tests.dossier_helpers import Clock, at, dossier
from tests.fakes.esms import FakeEsms
from tests.routing_helpers import alerts_yaml, load

DUE = at(13, 17)  # Friday 17:00
WARN_2D = at(11, 17)  # 16 working hours before: Wednesday 17:00
TIMEOUT = ProbeOutcome(success=False, reason=FailureReason.TIMEOUT, detail="timed out")


@contextmanager
def write_locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the file's write lock (as a backup or an admin's shell would)."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield other
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


async def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll until `condition()` holds: background work has no completion event to wait on."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    assert condition()


async def test_alert_routing_outlives_a_long_store_stall(tmp_path: Path) -> None:
    """An incident routed while the store is locked for longer than three attempts still goes out, and so
    does one published afterwards: the routing loop neither dies nor gives the stalled event up."""
    async with FakeEsms() as esms:
        section = alerts_yaml()
        section["channels"][1].update(
            {"url": esms.url, "api_key": "fake-esms-api-key", "secret_key": "fake-esms-secret-key"}
        )
        section["directory"]["people"][5]["channels"] = ["sms"]
        # At once (no grouping wait), so the test need not wait the default 30 s.
        section["rules"] = [
            {
                "name": "outage",
                "on": ["target_down", "target_recovered"],
                "to": ["it_oncall"],
                "group_wait": "0s",
                "group_interval": "0.2s",
            }
        ]
        config = load(section)
        bus = EventBus()
        path = tmp_path / "service.db"
        async with SqliteStore(path, busy_timeout=0.05, flush_interval=0.05) as store:
            service = AlertService(config, store, bus, Calendars(config.calendars, config.zone))
            await service.start()
            try:
                now = datetime.now(UTC)
                with write_locked(path):
                    bus.publish(IncidentOpened(now, 11, "dvc", FailureReason.TIMEOUT))
                    # Well past three attempts (0.2 s + 0.4 s of backoff, 0.05 s of busy wait each).
                    await asyncio.sleep(2.0)
                bus.publish(IncidentOpened(now, 12, "portal", FailureReason.REFUSED))
                await _wait_for(lambda: len(esms.messages) >= 2)
            finally:
                await service.stop(grace=2)
            texts = [str(message["content"]) for message in esms.messages]
            assert [any(target in text for text in texts) for target in ("dvc", "portal")] == [True, True]
            rows = await store.reader.execute_fetchall("SELECT status FROM alert_outbox")
            assert {row[0] for row in rows} == {"sent"}
            assert sum(store.facts.errors.values()) >= 3, "each failed attempt was counted"
            assert store.backlog == 0


async def test_a_crossing_counts_as_recorded_only_once_committed(tmp_path: Path) -> None:
    """A crossing due while the store is locked is published once the lock goes; one whose recording is
    abandoned (cancelled mid-retry) is forgotten in memory and published by the next pass."""
    clock = Clock(at(9, 9))
    path = tmp_path / "s.db"
    async with SqliteStore(path, clock=clock, flush_interval=0.05, busy_timeout=0.05) as store:
        bus = EventBus()
        events = bus.subscribe("test", DossierThresholdCrossed)
        dossiers = DossierStore(store)
        await dossiers.load()
        engine = DeadlineEngine(Calendars(), ("2d", "4h"), dossiers, store, bus, clock)
        first, second = dossier("A-1", DUE), dossier("A-2", DUE)
        await dossiers.write_sync(
            SyncWrite(clock.now, [Upsert(d, "open", 0, engine.timeline(d)) for d in (first, second)])
        )
        for d in (first, second):
            dossiers.tracked[d.code] = TrackedDossier(d)
        assert await engine.update([first, second], clock.now) == 0

        with write_locked(path):
            pending = asyncio.create_task(engine.run_due(WARN_2D))
            await asyncio.sleep(0.5)
            assert not pending.done(), "the crossing waits for the store instead of failing"
            assert events.backlog == 0, "nothing is published before its commit"
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        # The abandoned pass left both crossings unrecorded in memory: the next pass publishes them.
        assert await engine.run_due(WARN_2D) == 2

        with write_locked(path):
            again = asyncio.create_task(engine.run_due(WARN_2D + timedelta(minutes=1)))
            await asyncio.sleep(0.3)
        assert await again == 0, "and never twice"
        published = [await events.get() for _ in range(events.backlog)]
        assert sorted((e.code, e.threshold) for e in published) == [("A-1", "2d"), ("A-2", "2d")]
        history = await dossiers.crossings("A-1")
        assert [(c.threshold, c.suppressed) for c in history] == [("2d", False)]
        bus.close()


async def record_past_the_backlog_limit(store: SqlStore, start: datetime) -> None:
    """5,000 failed results while the store cannot be written; the backlog limit must be 1,000."""
    for i in range(5000):
        store.record(ProbeResult("portal", start + timedelta(seconds=i), 1.0, TIMEOUT, Health.DOWN))
        if i % 500 == 0:
            await asyncio.sleep(0.05)  # the writer tries, and fails, in between
    await asyncio.sleep(0.1)
    assert store.dropped_samples == 4000
    assert store.facts.errors["flush"] >= 1


async def check_oldest_samples_kept_and_every_result_counted(
    store: SqlStore, start: datetime, limit: int
) -> None:
    """Once written: the oldest `limit` raw samples, and rollups counting all 5,000 results."""
    rows = await store.reader.execute_fetchall("SELECT count(*) FROM probe_results")
    assert rows[0][0] == limit, "the oldest samples are kept, in order"
    report = await store.uptime("portal", start, start + timedelta(hours=2))
    assert report.failures == 5000, "rollups counted every result"


async def test_write_buffer_stays_bounded_while_the_store_is_locked(tmp_path: Path) -> None:
    """Past the backlog limit only raw samples are dropped (counted); rollups still count every result."""
    start = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    clock = Clock(start + timedelta(hours=3))
    path = tmp_path / "store.db"
    limit = 1000
    store = SqliteStore(path, clock=clock, flush_interval=0.02, busy_timeout=0.02, raw_backlog_limit=limit)
    await store.open()
    try:
        with write_locked(path):
            await record_past_the_backlog_limit(store, start)
        await _wait_for(lambda: store.pending_writes == 0)
        await check_oldest_samples_kept_and_every_result_counted(store, start, limit)
    finally:
        await store.close()


async def test_a_cancelled_transaction_leaves_nothing_open(tmp_path: Path) -> None:
    """A flush cancelled while its BEGIN waits on another process's lock (the uptime refresh cancelled at
    shutdown) leaves no transaction behind once that BEGIN goes through: later writes still work."""
    path = tmp_path / "store.db"
    store = SqliteStore(path, flush_interval=60, busy_timeout=2.0)
    await store.open()
    try:
        for _ in range(5):
            store.record(ProbeResult("portal", datetime.now(UTC), 0.1, ProbeOutcome(success=True), Health.UP))
            with write_locked(path) as other:
                task = asyncio.create_task(store.flush())
                await asyncio.sleep(0.05)  # the BEGIN now waits on the lock in aiosqlite's thread
                task.cancel()
                # The lock goes: the BEGIN succeeds after its caller has gone.
                other.execute("ROLLBACK")
                await asyncio.gather(task, return_exceptions=True)
            await store.flush()
            assert store.pending_writes == 0
        await store.set_value("k", "w")
        assert await store.get_value("k") == "w"
    finally:
        await store.close()
