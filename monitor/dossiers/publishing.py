"""Recording and publishing threshold crossings the deadline engine found.

Each crossing is recorded with ON CONFLICT DO NOTHING on (code, threshold, due_at) and published only
when the row is new, so restarts and overlapping evaluations never publish one twice. The record is
retried until committed (a locked or full disk delays it). An overdue crossing carries whether a
dossier-system incident overlapped the working window before the due time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from monitor.dossiers.config import WorkingAmount
from monitor.dossiers.schedule import TrackedEntry
from monitor.dossiers.store import DossierStore, NewCrossing
from monitor.events import DossierThresholdCrossed, EventBus
from monitor.store.durable import until_committed
from monitor.store.sql import SqlStore

__all__ = ["CrossingPublisher", "PendingCrossing"]

log = structlog.get_logger("monitor.dossiers.engine")

# (entry, threshold, due_at epoch seconds, suppressed): found by an evaluation, not yet recorded.
PendingCrossing = tuple[TrackedEntry, str, int, bool]


class CrossingPublisher:
    """Records pending crossings in one transaction, then publishes the new, unsuppressed ones."""

    def __init__(
        self,
        dossier_store: DossierStore,
        store: SqlStore,
        bus: EventBus,
        dossier_system_targets: Sequence[str] | Callable[[], Sequence[str]],
        outage_window: WorkingAmount,
    ) -> None:
        self.dossier_store = dossier_store
        self.store = store
        self.bus = bus
        self._targets = dossier_system_targets
        self.outage_window = outage_window
        self.published: Counter[str] = Counter()
        self.suppressed = 0

    async def record_and_publish(self, pending: Sequence[PendingCrossing], now: datetime) -> int:
        """Record every pending crossing; publish the new ones; how many were published."""
        crossings: list[NewCrossing] = []
        lefts: list[timedelta] = []
        for entry, name, due_key, suppressed in pending:
            # Only a dossier with a timeline crosses anything.
            timeline = entry.timeline
            left = timedelta(0)
            overlap: bool | None = None
            incident_ids: tuple[int, ...] = ()
            crossed_at = next(ts for key, ts in timeline.crossings if key == name)  # type: ignore[union-attr]
            if not suppressed:
                left = entry.calendar.working_time_between(now, datetime.fromtimestamp(due_key, UTC))
                if name == "overdue":
                    overlap, incident_ids = await self._outage(entry, due_key)
            crossings.append(
                NewCrossing(
                    entry.dossier.code,
                    entry.dossier.unit_code,
                    name,
                    due_key,
                    round(crossed_at),
                    int(left.total_seconds()),
                    suppressed,
                    overlap,
                    incident_ids,
                )
            )
            lefts.append(left)
        ids = await until_committed(
            self.store.facts, "crossing", lambda: self.dossier_store.record_crossings(crossings)
        )
        published = 0
        for (entry, *_), crossing, left, crossing_id in zip(pending, crossings, lefts, ids, strict=True):
            if crossing_id is None:
                continue
            if crossing.suppressed:
                self.suppressed += 1
                continue
            dossier = entry.dossier
            thresholds = entry.timeline.crossings  # type: ignore[union-attr]
            await self.bus.publish_durable(
                DossierThresholdCrossed(
                    at=now,
                    crossing_id=crossing_id,
                    code=dossier.code,
                    unit_code=dossier.unit_code,
                    unit_name=dossier.unit_name,
                    procedure_code=dossier.procedure_code,
                    procedure_name=dossier.procedure_name,
                    assignee_id=dossier.assignee_id,
                    assignee_name=dossier.assignee_name,
                    threshold=crossing.threshold,
                    due_at=datetime.fromtimestamp(crossing.due_at, UTC),
                    working_time_left=left,
                    # The smallest threshold in this dossier's calendar (last in crossing order).
                    is_last_warning=len(thresholds) > 1 and crossing.threshold == thresholds[-2][0],
                    outage_overlap=crossing.outage_overlap,
                    outage_incident_ids=crossing.outage_incident_ids,
                )
            )
            self.published[crossing.threshold] += 1
            published += 1
        if published:
            log.info("dossier_crossings_published", count=published)
        return published

    def _target_names(self) -> set[str]:
        targets = self._targets() if callable(self._targets) else self._targets
        return set(targets)

    async def _outage(self, entry: TrackedEntry, due_ts: int) -> tuple[bool, tuple[int, ...]]:
        """Whether a dossier-system incident overlapped the working window before the due time."""
        names = self._target_names()
        if not names:
            return False, ()
        due = datetime.fromtimestamp(due_ts, UTC)
        window = self.outage_window.hours_in(entry.calendar.hours_per_day)
        start = entry.calendar.add_working_time(due, hours=-window)
        incidents = await self.store.incidents(start, due)
        ids = tuple(sorted(incident.id for incident in incidents if incident.target in names))
        return bool(ids), ids
