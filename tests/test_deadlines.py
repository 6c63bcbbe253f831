"""The deadline engine on a real store, both engines: states, crossings, restarts, pauses, outages."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from monitor.calendar import Calendars, CalendarsConfig
from monitor.dossiers.config import DossiersConfig, parse_working_amount
from monitor.dossiers.model import DossierStatus
from monitor.events import DossierThresholdCrossed
from tests.dossier_helpers import HCM, Clock, at, closed_incident, dossier, hours, tracking
from tests.store_engines import StoreFactory

DUE = at(13, 17)  # Friday 17:00
WARN_2D = at(11, 17)  # 16 working hours before: Wednesday 17:00
WARN_4H = at(13, 11)  # Friday 11:00


def crossings(events: list) -> list[tuple[str, str]]:
    return [(e.code, e.threshold) for e in events if isinstance(e, DossierThresholdCrossed)]


def test_working_amounts_and_config_validation() -> None:
    """Thresholds are working time (`2d` = 2 calendar days of work), validated with short messages."""
    amount = parse_working_amount("1d4h")
    assert (amount.days, amount.hours, amount.hours_in(8)) == (1, 4, 12)
    assert parse_working_amount("90m").hours == 1.5
    for bad in ("", "2x", "0h", "2w"):
        with pytest.raises(ValueError, match="invalid working time"):
            parse_working_amount(bad)
    with pytest.raises(ValidationError, match="must not repeat"):
        DossiersConfig(thresholds=["4h", "4h"])
    with pytest.raises(ValidationError, match="invalid working time 'overdue'"):
        DossiersConfig(thresholds=["overdue"])
    assert DossiersConfig().threshold_amounts[0].hours_in(8) == 16


async def test_crossings_fire_at_their_instant_exactly_once(stores: StoreFactory, tmp_path: Path) -> None:
    """The heap wakes at each crossing instant (not before), and each crossing is published once."""
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        assert await t.put([dossier("A-1", DUE)], clock.now) == 0
        assert t.engine.state_of("A-1") == "on_track"
        assert t.engine.next_wakeup() == WARN_2D
        assert await t.engine.run_due(WARN_2D - timedelta(seconds=1)) == 0
        assert await t.engine.run_due(WARN_2D) == 1
        [event] = t.drain()
        assert isinstance(event, DossierThresholdCrossed)
        assert (event.threshold, event.working_time_left, event.is_last_warning) == ("2d", hours(16), False)
        assert event.due_at == DUE and event.assignee_id == "u42" and event.crossing_id > 0
        assert t.engine.state_of("A-1") == "due_soon"
        # Re-running the same instant, or re-sending the unchanged dossier, publishes nothing more.
        assert await t.engine.run_due(WARN_2D) == 0
        assert await t.put([dossier("A-1", DUE)], at(12, 8)) == 0
        assert await t.engine.run_due(at(13, 0)) == 0
        assert t.engine.state_of("A-1") == "due_today"
        assert await t.engine.run_due(WARN_4H) == 1
        [event] = t.drain()
        assert (event.threshold, event.working_time_left, event.is_last_warning) == ("4h", hours(4), True)
        assert await t.engine.run_due(DUE) == 1
        [event] = t.drain()
        assert event.overdue and event.working_time_left == timedelta(0)
        assert t.engine.state_of("A-1") == "overdue"
        assert t.engine.next_wakeup() is None
        history = await t.dossiers.crossings("A-1")
        assert [(c.threshold, c.suppressed) for c in history] == [
            ("2d", False),
            ("4h", False),
            ("overdue", False),
        ]


async def test_restart_never_publishes_a_crossing_twice(stores: StoreFactory, tmp_path: Path) -> None:
    """A new engine on the same file resumes: what was published stays published; later ones still fire."""
    clock = Clock(at(9, 9))
    path = tmp_path / "s.db"
    async with tracking(stores, path, clock) as t:
        await t.put([dossier("A-1", DUE), dossier("B-2", at(20, 17))], clock.now)
        assert await t.engine.run_due(WARN_2D) == 1
        first_id = t.drain()[0].crossing_id
    clock.set(at(12, 9))
    async with tracking(stores, path, clock) as t:
        assert await t.engine.load() == 0
        assert t.engine.tracked == 2 and t.engine.state_of("A-1") == "due_soon"
        assert t.drain() == []
        assert await t.engine.run_due(WARN_4H) == 1
        [event] = t.drain()
        assert event.threshold == "4h" and event.crossing_id != first_id
    # Stopped across the due time: on restart only the overdue crossing is published, 4h stays once.
    clock.set(at(16, 8))
    async with tracking(stores, path, clock) as t:
        assert await t.engine.load() == 1
        assert crossings(t.drain()) == [("A-1", "overdue")]
        rows = await t.store.reader.execute_fetchall(
            "SELECT threshold, count(*) FROM dossier_crossings WHERE code = 'A-1' GROUP BY threshold"
        )
        assert sorted(rows) == [("2d", 1), ("4h", 1), ("overdue", 1)]


async def test_first_seen_late_publishes_only_the_deepest_threshold(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Past 2d and 4h at first sight: only 4h is published, 2d is recorded as suppressed for good."""
    clock = Clock(at(13, 12))
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        assert await t.put([dossier("A-1", DUE), dossier("C-3", at(12, 17))], clock.now) == 2
        assert sorted(crossings(t.drain())) == [("A-1", "4h"), ("C-3", "overdue")]
        history = await t.dossiers.crossings("C-3")
        assert [(c.threshold, c.suppressed) for c in history] == [
            ("2d", True),
            ("4h", True),
            ("overdue", False),
        ]
        assert t.engine.crossings_suppressed == 3
        assert await t.engine.run_due(DUE) == 1
        assert crossings(t.drain()) == [("A-1", "overdue")]
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        await t.dossiers.load()
        assert await t.engine.load(at(16, 8)) == 0


async def test_pause_freezes_and_resume_with_new_due_date_reschedules(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """No crossing while paused, even past the old due time; a new due date warns again from scratch."""
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        await t.put([dossier("A-1", DUE)], clock.now)
        assert await t.engine.run_due(WARN_2D) == 1
        t.drain()
        await t.put([dossier("A-1", DUE, status=DossierStatus.PAUSED, raw_status="waiting")], at(12, 8))
        assert t.engine.state_of("A-1") == "paused"
        assert t.engine.next_wakeup() is None
        assert await t.engine.run_due(at(17, 9)) == 0
        assert t.drain() == []
        new_due = at(20, 17)
        assert await t.put([dossier("A-1", DUE, extended_due_at=new_due)], at(17, 9)) == 0
        assert t.engine.state_of("A-1") == "on_track"
        assert t.engine.next_wakeup() == at(18, 17)
        assert await t.engine.run_due(at(18, 17)) == 1
        [event] = t.drain()
        assert (event.threshold, event.due_at) == ("2d", new_due)


async def test_extension_reschedules_and_old_instants_stay_silent(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """After an extension the old 4h instant passes without an event; the new due date warns at 2d again."""
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        await t.put([dossier("A-1", DUE)], clock.now)
        assert await t.engine.run_due(WARN_2D) == 1
        t.drain()
        await t.put([dossier("A-1", DUE, extended_due_at=at(19, 17))], at(12, 9))
        assert await t.engine.run_due(DUE) == 0
        assert t.engine.state_of("A-1") == "on_track"
        assert t.engine.next_wakeup() == at(17, 17)
        assert await t.engine.run_due(at(17, 17)) == 1
        assert crossings(t.drain()) == [("A-1", "2d")]


async def test_outage_attribution_with_a_known_incident(stores: StoreFactory, tmp_path: Path) -> None:
    """An incident of a dossier-system target in the last working day marks the overdue crossing."""
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock, targets=["dvc-portal"]) as t:
        hit = await closed_incident(t.store, "dvc-portal", at(13, 9), at(13, 10))
        await closed_incident(t.store, "library-site", at(16, 9), at(16, 10), "status")
        await t.put([dossier("A-1", DUE), dossier("B-2", at(16, 17))], clock.now)
        await t.engine.run_due(at(17, 8))
        overdue = [e for e in t.drain() if isinstance(e, DossierThresholdCrossed) and e.overdue]
        by_code = {e.code: e for e in overdue}
        assert by_code["A-1"].outage_overlap is True and by_code["A-1"].outage_incident_ids == (hit,)
        assert by_code["B-2"].outage_overlap is False and by_code["B-2"].outage_incident_ids == ()
        assert await t.dossiers.overdue_outage_totals() == {"H12.01": 1}
        [(record, code)] = await t.dossiers.overdue_during_outage(at(1, 0))
        assert code == "A-1" and record.outage_incident_ids == (hit,)
        row = await t.dossiers.get("A-1", at(17, 8))
        assert row is not None and row.overdue_outage is True and row.state == "overdue"


async def test_background_timer_fires_between_syncs(stores: StoreFactory, tmp_path: Path) -> None:
    """With the timer task running, moving the clock past a crossing publishes it without any sync."""
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        await t.put([dossier("A-1", DUE)], clock.now)
        t.engine.start()
        clock.set(WARN_2D + timedelta(seconds=5))
        t.engine.wake()
        event = await asyncio.wait_for(t.events.get(), timeout=5)
        assert isinstance(event, DossierThresholdCrossed) and event.threshold == "2d"
        # Pushing an earlier instant wakes the sleeping timer too.
        await t.put([dossier("Z-9", at(11, 17) + timedelta(hours=18))], clock.now)
        clock.set(at(12, 11) + timedelta(seconds=1))
        t.engine.wake()
        event = await asyncio.wait_for(t.events.get(), timeout=5)
        assert (event.code, event.threshold) == ("Z-9", "4h")


async def test_continuous_calendar_and_computed_due_dates(stores: StoreFactory, tmp_path: Path) -> None:
    """A continuous-calendar procedure counts 2d as 48 hours; a duration-only dossier gets a due date."""
    calendars = Calendars(CalendarsConfig(procedures={"2.002": "continuous"}), HCM)
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock, calendars=calendars) as t:
        sunday_due = at(15, 9)
        continuous = dossier("K-1", sunday_due, procedure_code="2.002")
        computed = dossier("D-1", None, received_at=at(9, 8), duration_days=3)
        await t.put([continuous, computed], clock.now)
        # D-1 is due Thursday 08:00, so its 2d instant (Tuesday 08:00) comes before K-1's (Friday 09:00).
        assert t.engine.next_wakeup() == at(10, 8)
        assert t.engine.timeline(continuous).crossings[0][1] == (sunday_due - timedelta(hours=48)).timestamp()
        due = t.engine.due_at(computed)
        assert due == at(12, 8)
        assert t.engine.timeline(computed).crossings[0][1] == at(10, 8).timestamp()


async def test_finished_classification_follows_half_day_sessions(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Returned before the due half-day is early, within it on time, after the due time late."""
    clock = Clock(at(9, 9))
    async with tracking(stores, tmp_path / "s.db", clock) as t:
        done = DossierStatus.FINISHED
        assert t.engine.classify(dossier("E", DUE, status=done, released_at=at(13, 11))) == "early"
        assert t.engine.classify(dossier("O", DUE, status=done, released_at=at(13, 14))) == "on_time"
        assert t.engine.classify(dossier("L", DUE, status=done, finished_at=at(13, 17, 30))) == "late"
        assert t.engine.classify(dossier("C", DUE, status=DossierStatus.CANCELLED)) is None
