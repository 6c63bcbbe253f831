"""Two writers on one database (replicas on PostgreSQL, two processes on one SQLite file): each crossing is
recorded and published by exactly one of them, and concurrent syncs of one source neither deadlock nor
let an older listing overwrite a newer one."""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path

from monitor.dossiers.model import Dossier, DossierStatus
from monitor.dossiers.store import DossierStore, NewCrossing, SyncWrite, Upsert
from monitor.events import DossierThresholdCrossed
from monitor.store import SqlStore
from tests.dossier_helpers import Clock, at, dossier, tracking
from tests.store_engines import StoreFactory

DUE = at(13, 17)  # Friday 17:00: the 2d warning is Wednesday 17:00, 4h is Friday 13:00


async def _opened(stack: AsyncExitStack, stores: StoreFactory, path: Path, clock: Clock) -> SqlStore:
    store = stores.new(path, clock=clock, flush_interval=0.05)
    await stack.enter_async_context(store)
    return store


def _listing(count: int, status: DossierStatus, *, seed: int) -> list[Upsert]:
    """`count` dossiers of one source in a shuffled order (as two replicas' pages may come)."""
    items = [Upsert(dossier(f"D-{n:05d}", DUE, status=status), status.value) for n in range(count)]
    random.Random(seed).shuffle(items)
    return items


async def test_two_engines_evaluating_the_same_dossiers_publish_each_crossing_once(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Two engines, two stores, one database, run at the same instants: every crossing published once."""
    clock = Clock(at(9, 9))
    path = tmp_path / "s.db"
    listed = [dossier(f"A-{n:03d}", DUE) for n in range(150)]
    async with tracking(stores, path, clock) as one, tracking(stores, path, clock) as two:
        await one.put(listed, clock.now)
        await two.put(listed, clock.now)
        published = []
        for instant in (at(11, 17, 30), at(13, 16), at(16, 9)):
            counts = await asyncio.gather(one.engine.run_due(instant), two.engine.run_due(instant))
            events = [e for e in one.drain() + two.drain() if isinstance(e, DossierThresholdCrossed)]
            assert sum(counts) == len(events)
            published += [(e.code, e.threshold, e.crossing_id) for e in events]
        keys = [(code, threshold) for code, threshold, _ in published]
        assert len(keys) == len(set(keys)) == 3 * 150, "each dossier: 2d, 4h, overdue, once in all"
        assert len({crossing_id for *_, crossing_id in published}) == len(published)
        stored = await one.store.reader.execute_fetchall("SELECT count(*) FROM dossier_crossings")
        assert stored == [(3 * 150,)]


async def test_record_crossings_returns_each_new_row_to_exactly_one_writer(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """The same crossings recorded by two stores at once: each new id comes back to one caller only."""
    clock = Clock(at(9, 9))
    async with AsyncExitStack() as stack:
        first, second = [DossierStore(await _opened(stack, stores, tmp_path / "s.db", clock)) for _ in "ab"]
        await first.write_sync(SyncWrite(clock.now, _listing(400, DossierStatus.OPEN, seed=1)))
        for round_ in range(5):
            due = 1_800_000_000 + round_
            crossings = [
                NewCrossing(f"D-{n:05d}", "H12.01", "overdue", due, due, 0, False, n % 2 == 0, (7,), "test")
                for n in range(400)
            ]
            # Different orders, as two engines' heaps may hand them out.
            shuffled = random.Random(round_).sample(crossings, len(crossings))
            a, b = await asyncio.gather(first.record_crossings(crossings), second.record_crossings(shuffled))
            by_key_a = {(c.code, c.due_at): i for c, i in zip(crossings, a, strict=True)}
            by_key_b = {(c.code, c.due_at): i for c, i in zip(shuffled, b, strict=True)}
            for key, got in by_key_a.items():
                assert (got is None) != (by_key_b[key] is None), key
            ids = [i for i in a + b if i is not None]
            assert len(ids) == len(set(ids)) == 400
        row = await first.get("D-00002", clock.now)
        assert row is not None and row.overdue_outage is True and row.outage_incident_ids == (7,)


async def test_concurrent_syncs_of_one_source_keep_the_newer_listing(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Two writers sync one source at once while a third records crossings of its dossiers, in any order:
    no deadlock, and the newer listing wins."""
    clock = Clock(at(9, 9))
    older_at, newer_at = at(10, 9), at(10, 9, 5)
    async with AsyncExitStack() as stack:
        first, second, third = [
            DossierStore(await _opened(stack, stores, tmp_path / "s.db", clock)) for _ in "abc"
        ]
        await first.write_sync(SyncWrite(at(9, 9), _listing(3000, DossierStatus.OPEN, seed=0)))
        for round_ in range(4):
            older = SyncWrite(
                older_at + timedelta(minutes=10 * round_),
                _listing(3000, DossierStatus.PAUSED, seed=round_ + 1),
                missed=[(f"D-{n:05d}", 1) for n in range(2000, 3000)],
                vanished=[f"D-{n:05d}" for n in range(2900, 3000)],
                full_source="test",
            )
            newer = SyncWrite(
                newer_at + timedelta(minutes=10 * round_),
                _listing(3000, DossierStatus.OPEN, seed=round_ + 10),
                full_source="test",
            )
            due = 1_800_000_000 + round_
            overdue = [
                NewCrossing(f"D-{n:05d}", "H12.01", "overdue", due, due, 0, False, True, (3,), "test")
                for n in range(2999, -1, -1)
            ]
            # The older listing's writer may start first or second; the newer listing wins either way.
            writes = (first.write_sync(older), second.write_sync(newer), third.record_crossings(overdue))
            await asyncio.gather(*(writes if round_ % 2 else reversed(writes)))
            rows = await first.store.reader.execute_fetchall(
                "SELECT status, missed_full_syncs, last_seen, count(*) FROM dossiers GROUP BY status,"
                " missed_full_syncs, last_seen"
            )
            assert rows == [("open", 0, round(newer.now.timestamp()), 3000)], round_
            crossed = await first.store.reader.execute_fetchall(
                "SELECT count(*) FROM dossiers WHERE overdue_outage = 1 AND outage_incident_ids = '3'"
            )
            assert crossed == [(3000,)]


async def test_an_older_listing_written_late_changes_nothing(stores: StoreFactory, tmp_path: Path) -> None:
    """A replica that lost its turn commits an older listing after a newer one: no dossier rolls back."""
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        finished = dossier("F-1", DUE, status=DossierStatus.FINISHED, released_at=at(12, 9))
        await t.dossiers.write_sync(SyncWrite(at(12, 10), [Upsert(finished, "finished", 0, None, "early")]))
        stale: Dossier = dossier("F-1", DUE)
        await t.dossiers.write_sync(
            SyncWrite(at(12, 9), [Upsert(stale, "open")], missed=[("F-1", 3)], vanished=["F-1"])
        )
        row = await t.dossiers.get("F-1", at(12, 11))
        assert row is not None and (row.status, row.timeliness, row.missed_full_syncs) == (
            "finished",
            "early",
            0,
        )
        assert row.last_seen == datetime.fromtimestamp(round(at(12, 10).timestamp()), row.last_seen.tzinfo)


async def test_a_sync_and_crossings_of_its_dossiers_at_once_never_deadlock(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """A sync locking listed then missed rows, and overdue crossings locking all in code order, at once."""
    clock = Clock(at(9, 9))
    async with AsyncExitStack() as stack:
        syncing, crossing = [
            DossierStore(await _opened(stack, stores, tmp_path / "s.db", clock)) for _ in "ab"
        ]
        await syncing.write_sync(SyncWrite(at(9, 9), _listing(3000, DossierStatus.OPEN, seed=0)))
        for round_ in range(3):
            listed = [
                u for u in _listing(3000, DossierStatus.OPEN, seed=round_) if u.dossier.code >= "D-01500"
            ]
            sync = SyncWrite(
                at(10, 9) + timedelta(minutes=round_),
                listed,
                missed=[(f"D-{n:05d}", round_ + 1) for n in range(1500)],
                full_source="test",
            )
            due = 1_800_000_000 + round_
            # A caller may leave the source out: the store then reads it (round 1).
            source = "" if round_ == 1 else "test"
            overdue = [
                NewCrossing(f"D-{n:05d}", "H12.01", "overdue", due, due, 0, False, False, (), source)
                for n in range(3000)
            ]
            ids = (await asyncio.gather(syncing.write_sync(sync), crossing.record_crossings(overdue)))[1]
            assert all(ids)
            rows = await syncing.store.reader.execute_fetchall(
                "SELECT missed_full_syncs, count(*) FROM dossiers GROUP BY missed_full_syncs ORDER BY 1"
            )
            assert rows == [(0, 1500), (round_ + 1, 1500)]
