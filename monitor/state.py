"""Per-target health: UP / DEGRADED / DOWN with failure and success thresholds.

The tracker is pure (no I/O): it takes a probe outcome and says what changed. The scheduler turns that
into store writes and events, so the rules here can be tested on a plain list of outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from monitor.model import FailureReason, Health, ProbeOutcome

__all__ = ["TargetTracker", "Transition"]


@dataclass(frozen=True, slots=True)
class Transition:
    """What one outcome changed: the new health, and whether an incident opens or closes."""

    previous: Health
    current: Health
    open_incident: bool = False
    close_incident: bool = False

    @property
    def changed(self) -> bool:
        return self.previous is not self.current


@dataclass(slots=True)
class TargetTracker:
    """Thresholded health of one target, plus what the metrics and API show about its last probe."""

    name: str
    failure_threshold: int = 3
    success_threshold: int = 2
    health: Health = Health.UNKNOWN
    failures_in_row: int = 0
    successes_in_row: int = 0
    degraded_in_row: int = 0
    clean_in_row: int = 0
    last_outcome: ProbeOutcome | None = None
    last_probe_at: datetime | None = None
    last_duration: float = 0.0
    last_change_at: datetime | None = None
    # Whether an incident is open for this target; the scheduler keeps its store id.
    incident_open: bool = False
    incident_started_at: datetime | None = None
    incidents_total: int = 0
    probes_by_result: dict[str, int] = field(
        default_factory=lambda: {"success": 0, "degraded": 0, "failure": 0}
    )

    def observe(
        self, outcome: ProbeOutcome, at: datetime, duration: float, in_maintenance: bool
    ) -> Transition:
        """Apply one outcome; return the transition (possibly no change)."""
        self.last_outcome = outcome
        self.last_probe_at = at
        self.last_duration = duration
        self.probes_by_result[outcome.result] += 1
        previous = self.health
        current = self._next_health(outcome)
        if current is not previous:
            self.health = current
            self.last_change_at = at
        # An incident opens on entering DOWN, or on the first DOWN result after a maintenance window ends.
        open_incident = current is Health.DOWN and not in_maintenance and not self.incident_open
        close_incident = current is not Health.DOWN and self.incident_open
        if open_incident:
            self.incident_open = True
            self.incident_started_at = at
            self.incidents_total += 1
        elif close_incident:
            self.incident_open = False
        return Transition(previous, current, open_incident, close_incident)

    def _next_health(self, outcome: ProbeOutcome) -> Health:
        if not outcome.success:
            self.failures_in_row += 1
            self.successes_in_row = 0
            self.degraded_in_row = 0
            self.clean_in_row = 0
            if self.health is Health.DOWN or self.failures_in_row >= self.failure_threshold:
                return Health.DOWN
            return self.health
        self.failures_in_row = 0
        self.successes_in_row += 1
        if outcome.degraded:
            self.degraded_in_row += 1
            self.clean_in_row = 0
        else:
            self.clean_in_row += 1
            self.degraded_in_row = 0
        observed = Health.DEGRADED if outcome.degraded else Health.UP
        if self.health is Health.UNKNOWN:
            return observed
        if self.health is Health.DOWN:
            return observed if self.successes_in_row >= self.success_threshold else Health.DOWN
        if self.health is Health.UP and outcome.degraded:
            return Health.DEGRADED if self.degraded_in_row >= self.failure_threshold else Health.UP
        if self.health is Health.DEGRADED and not outcome.degraded:
            return Health.UP if self.clean_in_row >= self.success_threshold else Health.DEGRADED
        return self.health

    @property
    def reason(self) -> FailureReason | None:
        return self.last_outcome.reason if self.last_outcome else None

    def resume(self, health: Health, incident_started_at: datetime | None) -> None:
        """Restore what the store remembers after a restart, so an ongoing outage is not a new incident."""
        self.health = health
        if incident_started_at is not None:
            self.incident_open = True
            self.incident_started_at = incident_started_at
            self.health = Health.DOWN
            # Still down: a single failure keeps it down, a recovery needs success_threshold in a row.
            self.failures_in_row = self.failure_threshold
