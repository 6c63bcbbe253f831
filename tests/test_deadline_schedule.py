"""The deadline engine's timer schedule: buckets per instant, stale slots, compaction, shared records."""

from __future__ import annotations

from pathlib import Path

from monitor.calendar import Calendars
from monitor.dossiers.model import DossierStatus
from monitor.dossiers.schedule import Schedule, TrackedEntry
from monitor.events import DossierThresholdCrossed
from tests.dossier_helpers import Clock, at, closed_incident, dossier, tracking
from tests.store_engines import StoreFactory

DUE = at(13, 17)  # Friday 17:00
WARN_2D = at(11, 17)


def entry(code: str, next_at: float | None) -> TrackedEntry:
    return TrackedEntry(dossier(code, DUE), Calendars().default, None, "on_track", next_at=next_at)


def test_schedule_hands_out_live_entries_by_instant_and_skips_stale_slots() -> None:
    """Entries come out earliest instant first; a re-planned or dropped entry's old slot is skipped."""
    schedule = Schedule()
    a, b, c = entry("A", 20.0), entry("B", 10.0), entry("C", 10.0)
    assert schedule.push(a, 20.0) is True
    assert schedule.push(b, 10.0) is True
    assert schedule.push(c, 10.0) is False  # same instant: appended to its bucket
    assert schedule.earliest() == 10.0
    b.next_at = 30.0  # re-planned: the slot at 10 is stale
    schedule.push(b, 30.0)
    c.next_at = None  # dropped
    assert schedule.earliest() == 20.0  # the bucket at 10 held only stale slots
    assert schedule.pop_due(25.0) == [a]
    assert schedule.earliest() == 30.0
    assert schedule.pop_due(29.0) == []
    assert schedule.pop_due(30.0) == [b]
    assert schedule.earliest() is None and len(schedule) == 0


def test_schedule_rebuild_keeps_only_live_entries() -> None:
    """Rebuilding drops every stale slot and keeps one per scheduled entry."""
    schedule = Schedule()
    a = entry("A", 5.0)
    for instant in (1.0, 2.0, 3.0, 5.0, 5.0):
        schedule.push(a, instant)
    assert len(schedule) == 5
    schedule.rebuild([a, entry("P", None)])
    assert len(schedule) == 1 and schedule.earliest() == 5.0


async def test_a_dossier_resent_many_times_is_evaluated_once_per_instant(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Re-sending a dossier unchanged adds slots at the same instant; it still crosses once, and the
    schedule is compacted back when stale slots dominate."""
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        for _ in range(5):
            await t.put([dossier("A-1", DUE)], clock.now)
        assert t.engine.next_wakeup() == WARN_2D
        assert await t.engine.run_due(WARN_2D) == 1
        assert t.engine.state_of("A-1") == "due_soon"
        assert await t.engine.run_due(WARN_2D) == 0
        for _ in range(1100):
            t.engine.track([dossier("A-1", DUE)], clock.now.timestamp())
        assert len(t.engine._schedule) <= 2 * t.engine.tracked + 1024


async def test_recorded_crossings_share_the_verdicts_tuples(stores: StoreFactory, tmp_path: Path) -> None:
    """Dossiers past the same crossings of one timeline share one record tuple, not one set each."""
    clock = Clock(at(13, 12))
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        assert await t.put([dossier(f"A-{i}", DUE) for i in range(3)], clock.now) == 3
        records = {id(t.engine._entries[f"A-{i}"].recorded) for i in range(3)}
        assert len(records) == 1
        assert t.engine._entries["A-0"].recorded == (
            ("2d", round(DUE.timestamp())),
            ("4h", round(DUE.timestamp())),
        )
        # Paused then resumed with the same due date: nothing recorded again, nothing published.
        await t.put([dossier("A-0", DUE, status=DossierStatus.PAUSED)], clock.now)
        assert await t.put([dossier("A-0", DUE)], clock.now) == 0
        assert await t.engine.run_due(DUE) == 3


async def test_a_storm_of_overdue_crossings_reads_the_incidents_once(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Overdue crossings of many due times in one pass get each its own outage window's incidents, from
    one query of the store for the whole batch."""
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock, targets=["dvc-portal"]) as t:
        hit = await closed_incident(t.store, "dvc-portal", at(13, 9), at(13, 10))
        still_open = await t.store.open_incident("dvc-portal", at(17, 14), "status", "")
        calls = 0
        incidents = t.store.incidents

        async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await incidents(*args, **kwargs)

        t.store.incidents = counted  # type: ignore[method-assign]
        # Due Friday 13th 17:00 (window Thursday 17:00 - Friday 17:00: the first incident), Monday 16th
        # 17:00 (window Friday 17:00 - Monday 17:00: neither) and Tuesday 17th 17:00 (the open one).
        dues = {"A": at(13, 17), "B": at(16, 17), "C": at(17, 17)}
        await t.put([dossier(f"{key}-{i}", due) for key, due in dues.items() for i in range(20)], clock.now)
        t.drain()
        calls = 0
        await t.engine.run_due(at(18, 8))
        overdue = {e.code: e for e in t.drain() if isinstance(e, DossierThresholdCrossed) and e.overdue}
        assert calls == 1 and len(overdue) == 60
        assert {overdue[f"A-{i}"].outage_incident_ids for i in range(20)} == {(hit,)}
        assert {overdue[f"B-{i}"].outage_overlap for i in range(20)} == {False}
        assert {overdue[f"C-{i}"].outage_incident_ids for i in range(20)} == {(still_open,)}
