"""Target health thresholds, flapping, incidents and maintenance windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from monitor.config import MaintenanceWindow
from monitor.maintenance import in_maintenance
from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.state import TargetTracker

OK = ProbeOutcome(success=True)
SLOW = ProbeOutcome(success=True, degraded=True, reason=FailureReason.SLOW)
FAIL = ProbeOutcome(success=False, reason=FailureReason.REFUSED)
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def _feed(tracker: TargetTracker, outcomes: list[ProbeOutcome], maintenance: bool = False) -> list[Health]:
    healths = []
    for step, outcome in enumerate(outcomes):
        tracker.observe(outcome, T0 + timedelta(seconds=10 * step), 0.01, maintenance)
        healths.append(tracker.health)
    return healths


def test_down_only_after_failure_threshold() -> None:
    """Two failures keep an UP target UP; the third makes it DOWN and opens an incident."""
    tracker = TargetTracker("portal", failure_threshold=3, success_threshold=2)
    assert _feed(tracker, [OK, FAIL, FAIL]) == [Health.UP, Health.UP, Health.UP]
    transition = tracker.observe(FAIL, T0, 0.01, False)
    assert transition.current is Health.DOWN and transition.open_incident
    assert tracker.incidents_total == 1


def test_recovery_needs_success_threshold() -> None:
    """A DOWN target needs success_threshold successes in a row to be UP again; then the incident closes."""
    tracker = TargetTracker("portal", failure_threshold=2, success_threshold=2)
    _feed(tracker, [FAIL, FAIL])
    assert tracker.health is Health.DOWN
    assert _feed(tracker, [OK, FAIL, OK]) == [Health.DOWN, Health.DOWN, Health.DOWN]
    transition = tracker.observe(OK, T0, 0.01, False)
    assert transition.current is Health.UP and transition.close_incident
    assert not tracker.incident_open


def test_flapping_target_opens_one_incident() -> None:
    """Alternating results never cross the thresholds: no incident storm from a flapping target."""
    tracker = TargetTracker("portal", failure_threshold=3, success_threshold=2)
    _feed(tracker, [OK, FAIL, OK, FAIL, FAIL, OK, FAIL, FAIL, OK] * 5)
    assert tracker.health is Health.UP
    assert tracker.incidents_total == 0
    _feed(tracker, [FAIL, FAIL, FAIL, OK, FAIL, OK, FAIL, FAIL, OK, OK])
    assert tracker.incidents_total == 1 and tracker.health is Health.UP


def test_degraded_uses_thresholds_too() -> None:
    """Slow results make the target DEGRADED after failure_threshold, and clean ones bring it back."""
    tracker = TargetTracker("portal", failure_threshold=2, success_threshold=2)
    assert _feed(tracker, [OK, SLOW, SLOW, OK, OK]) == [
        Health.UP,
        Health.UP,
        Health.DEGRADED,
        Health.DEGRADED,
        Health.UP,
    ]
    assert tracker.incidents_total == 0


def test_down_in_maintenance_opens_no_incident_until_window_ends() -> None:
    """Failures inside a maintenance window open no incident; still failing after it, one opens."""
    tracker = TargetTracker("portal", failure_threshold=2)
    _feed(tracker, [FAIL, FAIL, FAIL], maintenance=True)
    assert tracker.health is Health.DOWN and not tracker.incident_open
    transition = tracker.observe(FAIL, T0, 0.01, False)
    assert transition.open_incident and tracker.incidents_total == 1


def test_weekly_maintenance_window_crosses_midnight() -> None:
    """A Sunday 22:00 window of 3h still covers Monday 00:30 local time, and not Monday 01:30."""
    window = MaintenanceWindow(start="22:00", duration=timedelta(hours=3), days=["sun"])
    sunday_2230 = datetime(2026, 11, 29, 22, 30, tzinfo=HCM)
    assert in_maintenance([window], sunday_2230, HCM)
    assert in_maintenance([window], datetime(2026, 11, 30, 0, 30, tzinfo=HCM), HCM)
    assert not in_maintenance([window], datetime(2026, 11, 30, 1, 30, tzinfo=HCM), HCM)
    assert not in_maintenance([window], datetime(2026, 11, 28, 22, 30, tzinfo=HCM), HCM)


def test_one_off_maintenance_window_uses_config_timezone() -> None:
    """A one-off window written in local time is compared in that zone, end excluded."""
    window = MaintenanceWindow(start="2026-12-05 21:00", duration=timedelta(hours=4))
    assert in_maintenance([window], datetime(2026, 12, 5, 14, 0, tzinfo=UTC), HCM)  # 21:00 local
    assert not in_maintenance([window], datetime(2026, 12, 5, 18, 0, tzinfo=UTC), HCM)  # 01:00 local, ended
    assert not in_maintenance([window], datetime(2026, 12, 5, 13, 59, tzinfo=UTC), HCM)
