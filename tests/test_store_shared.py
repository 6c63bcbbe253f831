"""Several writers on one database (replicas on PostgreSQL; two stores on one file on SQLite): one open
incident per target whoever opens it, one id per target name, packed rows counted once, and each run's
live rollup copy read and dropped by run. Both engines, real databases."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.store.base import StoreError
from monitor.store.engine import DB_ERRORS
from monitor.store.heartbeat import Heartbeat
from monitor.store.migrations import MIGRATIONS
from tests.store_engines import StoreFactory
from tests.test_store import T0, TIMEOUT, Clock, count, result

HOUR = timedelta(hours=1)


async def test_opening_an_incident_on_a_target_with_one_open_continues_it(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """A second open_incident for a target returns the open incident's id; once closed, a new one opens."""
    async with stores.new(tmp_path / "store.db", clock=Clock(T0)) as store:
        first = await store.open_incident("portal", T0, "timeout", "first")
        again = await store.open_incident("portal", T0 + timedelta(minutes=1), "refused", "takeover")
        assert again == first
        [open_one] = await store.open_incidents()
        assert (open_one.id, open_one.started_at, open_one.detail) == (first, T0, "first")
        await store.close_incident(first, T0 + timedelta(minutes=5))
        later = await store.open_incident("portal", T0 + timedelta(minutes=6), "timeout", "")
        assert later != first
        assert [i.id for i in await store.open_incidents()] == [later]


async def test_two_stores_opening_incidents_for_the_same_targets_at_once_get_one_each(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Two stores on one database (two replicas) race to open incidents for ten new targets: every
    target ends with one open incident, both stores got its id, and each name has one target row."""
    path = tmp_path / "store.db"
    clock = Clock(T0)
    async with stores.new(path, clock=clock) as first, stores.new(path, clock=clock) as second:
        names = [f"target-{index}" for index in range(10)]
        ids = await asyncio.gather(
            *(store.open_incident(name, T0, "timeout", "") for name in names for store in (first, second))
        )
        assert ids[0::2] == ids[1::2]
        assert len(set(ids)) == len(names)
        assert await count(first, "incidents") == len(names)
        rows = await first.reader.execute_fetchall("SELECT name, count(*) FROM targets GROUP BY name")
        assert sorted(rows) == [(name, 1) for name in sorted(names)]
        assert sorted(i.target for i in await second.open_incidents()) == sorted(names)


async def test_two_writers_resolve_a_new_target_to_one_id(stores: StoreFactory, tmp_path: Path) -> None:
    """Both stores record results for the same new targets and flush at once: one row per name, the
    earliest first sighting kept, and both stores use the same id afterwards."""
    path = tmp_path / "store.db"
    clock = Clock(T0 + timedelta(minutes=5))
    async with (
        stores.new(path, clock=clock, flush_interval=3600) as first,
        stores.new(path, clock=clock, flush_interval=3600) as second,
    ):
        for index in range(20):
            first.record(result(f"t{index}", T0 + timedelta(seconds=2), TIMEOUT))
            second.record(result(f"t{index}", T0 + timedelta(seconds=1), TIMEOUT))
        await asyncio.gather(first.flush(), second.flush())
        rows = await first.reader.execute_fetchall("SELECT name, id, first_seen FROM targets")
        assert len(rows) == 20
        t0_ms = int(T0.timestamp() * 1000)
        assert {first_seen for _, _, first_seen in rows} == {t0_ms + 1000}
        for name, target_id, _ in rows:
            assert first.committed_target_id(name) == target_id == second.committed_target_id(name)
        assert await count(first, "probe_results") == 40


async def test_packed_rows_closed_by_two_writers_count_every_probe_once(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Each store stages minutes of its own target in one hour; when the hour closes both pack it (at
    once on PostgreSQL): every probe counts once in the packed rows."""
    path = tmp_path / "store.db"
    clock = Clock(T0 + timedelta(minutes=30))
    async with (
        stores.new(path, clock=clock, flush_interval=3600) as first,
        stores.new(path, clock=clock, flush_interval=3600) as second,
    ):
        for minute in range(20):
            at = T0 + timedelta(minutes=minute)
            first.record(result("alpha", at))
            first.record(result("alpha", at + timedelta(seconds=30)))
            second.record(result("beta", at, TIMEOUT))
        await first.flush()
        await second.flush()
        assert await count(first, "rollup_open") > 0
        clock.now = T0 + HOUR + timedelta(minutes=1)
        if stores.postgres:
            await asyncio.gather(first.flush(), second.flush())
        else:
            # One daemon per file on SQLite: two writers only ever take turns.
            await first.flush()
            await second.flush()
        # The hour's minutes are packed; its hour entries wait for the day (rollup_open, size 3600).
        rows = await first.reader.execute_fetchall("SELECT count(*) FROM rollup_open WHERE size = 60")
        assert rows[0][0] == 0
        async with stores.new(path, readonly=True, clock=clock) as reader:
            alpha = await reader.uptime("alpha", T0, T0 + HOUR)
            beta = await reader.uptime("beta", T0, T0 + HOUR)
    assert (alpha.probes, alpha.failures) == (40, 0)
    assert (beta.probes, beta.failures) == (20, 20)


async def test_live_copies_belong_to_their_run(stores: StoreFactory, tmp_path: Path) -> None:
    """A process opening the database keeps a live run's copy of its open rollups and readers count it;
    a run silent past its heartbeat is not read, and the next process to open drops its copy."""
    path = tmp_path / "store.db"
    clock = Clock(T0 + timedelta(minutes=5, seconds=30))
    async with stores.new(path, clock=clock, flush_interval=3600) as daemon:
        beat = Heartbeat(daemon, timedelta(seconds=1), clock)
        await beat.start()
        # All in the open minute (05:00-06:00): only memory and the heartbeat's copy hold them.
        for second in range(30):
            daemon.record(result("portal", T0 + timedelta(minutes=5, seconds=second)))
        clock.now += timedelta(seconds=2)
        await daemon.flush()
        assert await count(daemon, "rollup_live") > 0
        async with stores.new(path, clock=clock):
            pass
        assert await count(daemon, "rollup_live") > 0, "another process's start dropped a live copy"
        async with stores.new(path, readonly=True, clock=clock) as reader:
            assert (await reader.uptime("portal", T0, T0 + HOUR)).probes == 30
        # The run goes silent (killed): past three heartbeats readers leave its copy out.
        if beat._task is not None:
            beat._task.cancel()
            await asyncio.gather(beat._task, return_exceptions=True)
        daemon.remove_batch_hook(beat._in_batch)
        clock.now += timedelta(seconds=10)
        async with stores.new(path, readonly=True, clock=clock) as reader:
            assert (await reader.uptime("portal", T0, T0 + HOUR)).probes == 0
        async with stores.new(path, clock=clock):
            pass
        assert await count(daemon, "rollup_live") == 0


async def test_migration_7_keeps_the_oldest_open_incident_of_a_target(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """A store from before migration 7 holding two open incidents of one target migrates: the oldest
    stays open, the later one ends where it started, and a third cannot be opened next to it."""
    path = tmp_path / "store.db"
    t0_ms = int(T0.timestamp() * 1000)
    # The schema as version 6 left it, written as that version's daemon did.
    engine = stores.new(path).engine
    conn, _ = await engine.open_writer(MIGRATIONS[:6], migrate=True)
    try:
        rows = await conn.execute_fetchall(
            "INSERT INTO targets (name, first_seen) VALUES ('portal', ?) RETURNING id", (t0_ms,)
        )
        for started in (t0_ms, t0_ms + 3_600_000):
            await conn.execute(
                "INSERT INTO incidents (target_id, started_at, reason) VALUES (?, ?, 'timeout')",
                (rows[0][0], started),
            )
        [(first,)] = await conn.execute_fetchall("SELECT min(id) FROM incidents")
    finally:
        await engine.close(conn)
    async with stores.new(path, clock=Clock(T0)) as store:
        assert [i.id for i in await store.open_incidents()] == [first]
        [later] = [i for i in await store.incidents(T0) if i.id != first]
        assert later.ended_at == later.started_at == T0 + HOUR
        assert await store.open_incident("portal", T0 + 2 * HOUR, "refused", "") == first
        with pytest.raises(DB_ERRORS, match=r"(?i)unique"):
            async with store.transaction() as conn:
                await conn.execute(
                    "INSERT INTO incidents (target_id, started_at) VALUES (?, ?)",
                    (store.committed_target_id("portal"), 0),
                )


async def test_reopening_an_incident_leaves_a_takeover_incident_alone(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """A restarted daemon reopens its incident closed at shutdown, unless another writer opened one for
    the target meanwhile: that one stays the only open incident."""
    path = tmp_path / "store.db"
    async with stores.new(path, clock=Clock(T0)) as store:
        first = await store.open_incident("portal", T0, "timeout", "")
        await store.close_incident(first, T0 + timedelta(minutes=1))
        await store.reopen_incident(first)
        assert [i.id for i in await store.open_incidents()] == [first]
        await store.close_incident(first, T0 + timedelta(minutes=2))
        taken_over = await store.open_incident("portal", T0 + timedelta(minutes=3), "timeout", "")
        await store.reopen_incident(first)
        assert [i.id for i in await store.open_incidents()] == [taken_over]
        with pytest.raises(StoreError, match="no incident 999"):
            await store.reopen_incident(999)
