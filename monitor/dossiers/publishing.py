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

from monitor.calendar import WorkingCalendar
from monitor.dossiers.config import WorkingAmount
from monitor.dossiers.schedule import TrackedEntry
from monitor.dossiers.store import DossierStore, NewCrossing
from monitor.events import DossierThresholdCrossed, EventBus
from monitor.store.buffer import to_ms
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
        outages = await self._outages(pending)
        crossings: list[NewCrossing] = []
        lefts: list[timedelta] = []
        # Dossiers sharing a timeline share these: computed once per (calendar, due time) per batch.
        left_by_due: dict[tuple[WorkingCalendar, int], timedelta] = {}
        for entry, name, due_key, suppressed in pending:
            left = timedelta(0)
            overlap: bool | None = None
            incident_ids: tuple[int, ...] = ()
            # Only a dossier with a timeline crosses anything.
            crossed_at = next(ts for key, ts in entry.timeline.crossings if key == name)  # type: ignore[union-attr]
            if not suppressed:
                key = (entry.calendar, due_key)
                left = left_by_due.get(key)  # type: ignore[assignment]
                if left is None:
                    left = left_by_due[key] = entry.calendar.working_time_between(
                        now, datetime.fromtimestamp(due_key, UTC)
                    )
                if name == "overdue":
                    overlap, incident_ids = outages(entry.calendar, due_key)
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
                    entry.dossier.source,
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

    async def _outages(
        self, pending: Sequence[PendingCrossing]
    ) -> Callable[[WorkingCalendar, int], tuple[bool, tuple[int, ...]]]:
        """Whether a dossier-system incident overlapped the working window before a due time, and which.

        One query for the whole batch (the incidents overlapping the union of its windows), then each
        window is matched in memory with the query's own bounds: a storm of overdue crossings costs one
        round trip, not one per dossier.
        """
        names = self._target_names()
        windows = {
            (entry.calendar, due_key): self._window(entry.calendar, due_key)
            for entry, name, due_key, suppressed in pending
            if name == "overdue" and not suppressed
        }
        if not names or not windows:
            return lambda _calendar, _due_key: (False, ())
        since = min(start for start, _due in windows.values())
        until = max(due for _start, due in windows.values())
        incidents = [i for i in await self.store.incidents(since, until) if i.target in names]
        found: dict[tuple[WorkingCalendar, int], tuple[bool, tuple[int, ...]]] = {}

        def outage(calendar: WorkingCalendar, due_key: int) -> tuple[bool, tuple[int, ...]]:
            key = (calendar, due_key)
            answer = found.get(key)
            if answer is None:
                start, due = (to_ms(moment) for moment in windows[key])
                ids = tuple(
                    sorted(
                        incident.id
                        for incident in incidents
                        if (incident.ended_at is None or to_ms(incident.ended_at) > start)
                        and to_ms(incident.started_at) < due
                    )
                )
                answer = found[key] = (bool(ids), ids)
            return answer

        return outage

    def _window(self, calendar: WorkingCalendar, due_ts: int) -> tuple[datetime, datetime]:
        """The working window before a due time in which an incident counts as an outage."""
        due = datetime.fromtimestamp(due_ts, UTC)
        window = self.outage_window.hours_in(calendar.hours_per_day)
        return calendar.add_working_time(due, hours=-window), due
