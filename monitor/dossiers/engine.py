"""The deadline engine: working time left, deadline state and threshold crossings of every open dossier.

Crossings are scheduled, not searched for: each tracked dossier has one entry in a timer heap keyed on
the next instant its state changes (a threshold crossing, the start of its due day, its due time). One
timer task sleeps until the earliest entry. A dossier that changes (new due date, pause, resume) gets a
new `version`; its older heap entries are skipped when popped (lazy invalidation), so nothing is ever
rescanned per tick.

Each crossing is recorded with INSERT OR IGNORE on (code, threshold, due_at) and published only when the
row is new, so restarts and overlapping evaluations never publish one twice. The record is retried until
committed (a locked or full disk delays it); should it fail otherwise, the crossings are unmarked in
memory and their dossiers re-evaluated, so a crossing is never taken as recorded before its commit.
A dossier first seen past several thresholds publishes the deepest one and records the shallower ones
as suppressed.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from monitor.calendar import Calendars, WorkingCalendar
from monitor.dossiers.config import WorkingAmount, parse_working_amount
from monitor.dossiers.model import Dossier, DossierStatus, collector_paused
from monitor.dossiers.store import DossierStore, NewCrossing, Timeline
from monitor.events import DossierFinished, DossierThresholdCrossed, EventBus
from monitor.store.durable import until_committed
from monitor.store.sql import SqlStore
from monitor.supervisor import Supervisor

__all__ = ["DeadlineEngine", "deadline_state"]

log = structlog.get_logger("monitor.dossiers.engine")

# The timer re-reads the clock at least this often, so a clock that jumps (suspend, tests) is noticed.
_MAX_SLEEP = 30.0
_TIMELINE_CACHE = 200_000


def _amounts(values: Sequence[str | WorkingAmount]) -> tuple[WorkingAmount, ...]:
    return tuple(
        value if isinstance(value, WorkingAmount) else parse_working_amount(value) for value in values
    )


def deadline_state(timeline: Timeline, now: float) -> str:
    """on_track, due_soon, due_today or overdue at epoch second `now` (due_today beats due_soon)."""
    if now >= timeline.deadline:
        return "overdue"
    if now >= timeline.due_day:
        return "due_today"
    if now >= timeline.soon:
        return "due_soon"
    return "on_track"


# Mutable on purpose: one per tracked dossier, updated in place on every evaluation.
@dataclass(slots=True, eq=False)
class _Entry:
    dossier: Dossier
    calendar: WorkingCalendar
    timeline: Timeline | None
    state: str
    # (threshold, due_at epoch seconds) already recorded for this dossier. None until the first one:
    # most dossiers never cross anything, and an empty set costs 216 bytes each at 100,000 dossiers.
    recorded: set[tuple[str, int]] | None = None
    version: int = 0
    next_at: float | None = None


@dataclass(frozen=True, slots=True)
class _Verdict:
    timeline: Timeline
    state: str
    # (threshold, due_at epoch seconds) of every crossing at or before now, in crossing order.
    passed: tuple[tuple[str, int], ...]
    next_at: float | None


class DeadlineEngine:
    """Tracks open dossiers against their due time in working time; publishes crossings as they happen.

    Drive it with `update()` (changed dossiers from a sync), `finished()`, `drop()`, and either the
    background timer (`start()`/`stop()`) or `await run_due(now)` in tests.
    """

    def __init__(
        self,
        calendars: Calendars,
        thresholds: Sequence[str | WorkingAmount],
        dossier_store: DossierStore,
        store: SqlStore,
        bus: EventBus,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        dossier_system_targets: Sequence[str] | Callable[[], Sequence[str]] = (),
        *,
        outage_window: str | WorkingAmount = "1d",
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor or Supervisor()
        self.calendars = calendars
        self.thresholds = _amounts(thresholds)
        self.dossier_store = dossier_store
        self.store = store
        self.bus = bus
        self.clock = clock
        self._targets = dossier_system_targets
        self.outage_window = (
            outage_window if isinstance(outage_window, WorkingAmount) else parse_working_amount(outage_window)
        )
        self._entries: dict[str, _Entry] = {}
        # (instant, code, version): codes are unique among live entries, so ties need no sequence number.
        self._heap: list[tuple[float, str, int]] = []
        self._calendar_by_key: dict[tuple[str, str], WorkingCalendar] = {}
        self._amounts: dict[str, tuple[tuple[str, float], ...]] = {}
        # calendar name -> due time -> timeline. Keyed on the datetime itself: its hash is cached on the
        # object and sources share one object per due-date text, so a hit costs no timestamp() call.
        self._timelines: dict[str, dict[datetime, Timeline]] = {}
        self._timeline_count = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # (unit, procedure, state) -> tracked dossiers; kept current on every evaluation.
        self.state_counts: Counter[tuple[str, str, str]] = Counter()
        self.crossings_published: Counter[str] = Counter()
        self.crossings_suppressed = 0

    # --- calendars and timelines ---------------------------------------------------------------------

    def calendar_for(self, unit_code: str, procedure_code: str) -> WorkingCalendar:
        key = (unit_code, procedure_code)
        calendar = self._calendar_by_key.get(key)
        if calendar is None:
            calendar = self._calendar_by_key[key] = self.calendars.for_dossier(unit_code, procedure_code)
        return calendar

    def _amounts_for(self, calendar: WorkingCalendar) -> tuple[tuple[str, float], ...]:
        amounts = self._amounts.get(calendar.name)
        if amounts is None:
            per_day = calendar.hours_per_day
            # Largest first: that is the order in which a dossier crosses them.
            amounts = tuple(
                sorted(((a.key, a.hours_in(per_day)) for a in self.thresholds), key=lambda kv: -kv[1])
            )
            self._amounts[calendar.name] = amounts
        return amounts

    def due_at(self, dossier: Dossier, calendar: WorkingCalendar | None = None) -> datetime | None:
        """The effective due time, computed in working time when the source gives only a duration."""
        due = dossier.effective_due_at
        if due is not None or dossier.received_at is None:
            return due
        if not (dossier.duration_days or dossier.duration_hours):
            return None
        calendar = calendar or self.calendar_for(dossier.unit_code, dossier.procedure_code)
        return calendar.due_date(
            dossier.received_at, days=dossier.duration_days or 0, hours=dossier.duration_hours or 0
        )

    def timeline(self, dossier: Dossier) -> Timeline | None:
        """When the dossier's state changes (shared by every dossier with the same calendar and due time)."""
        calendar = self.calendar_for(dossier.unit_code, dossier.procedure_code)
        due = self.due_at(dossier, calendar)
        return None if due is None else self._timeline(calendar, due)

    def _timeline(self, calendar: WorkingCalendar, due: datetime) -> Timeline:
        by_due = self._timelines.get(calendar.name)
        if by_due is None:
            by_due = self._timelines[calendar.name] = {}
        timeline = by_due.get(due)
        if timeline is None:
            due_ts = due.timestamp()
            crossings = tuple(
                (name, calendar.add_working_time(due, hours=-hours).timestamp())
                for name, hours in self._amounts_for(calendar)
            )
            local = due.astimezone(calendar.zone)
            midnight = datetime(local.year, local.month, local.day, tzinfo=calendar.zone).timestamp()
            timeline = Timeline(due_ts, (*crossings, ("overdue", due_ts)), midnight)
            if self._timeline_count >= _TIMELINE_CACHE:
                self._timelines.clear()
                self._timeline_count = 0
                by_due = self._timelines[calendar.name] = {}
            by_due[due] = timeline
            self._timeline_count += 1
        return timeline

    def working_time_left(self, dossier: Dossier, now: datetime | None = None) -> timedelta | None:
        calendar = self.calendar_for(dossier.unit_code, dossier.procedure_code)
        due = self.due_at(dossier, calendar)
        return None if due is None else calendar.working_time_between(now or self.clock(), due)

    def classify(self, dossier: Dossier) -> str | None:
        """early / on_time / late for a returned dossier (OpenCPS half-day rule); None when it cannot be."""
        returned = dossier.returned_at
        if dossier.status is not DossierStatus.FINISHED or returned is None:
            return None
        calendar = self.calendar_for(dossier.unit_code, dossier.procedure_code)
        due = self.due_at(dossier, calendar)
        return None if due is None else calendar.classify_return(due, returned).value

    # --- tracking ------------------------------------------------------------------------------------

    @property
    def tracked(self) -> int:
        return len(self._entries)

    def state_of(self, code: str) -> str | None:
        entry = self._entries.get(code)
        return None if entry is None else entry.state

    def next_wakeup(self) -> datetime | None:
        """The instant of the earliest live heap entry (after lazily dropping stale ones)."""
        heap = self._heap
        while heap:
            ts, code, version = heap[0]
            entry = self._entries.get(code)
            if entry is not None and entry.version == version:
                return datetime.fromtimestamp(ts, UTC)
            heapq.heappop(heap)
        return None

    async def load(self, now: datetime | None = None) -> int:
        """Resume from the store: track its open dossiers, publish what was crossed while stopped."""
        recorded = await self.dossier_store.recorded_crossings()
        dossiers = [t.dossier for t in self.dossier_store.tracked.values() if not t.vanished]
        return await self.update(dossiers, now, recorded=recorded)

    async def update(
        self,
        dossiers: Iterable[Dossier],
        now: datetime | None = None,
        *,
        recorded: dict[str, set[tuple[str, int]]] | None = None,
    ) -> int:
        """(Re)evaluate new or changed open/paused dossiers; returns how many crossings were published."""
        now = now or self.clock()
        async with self._lock:
            pending = self.track(dossiers, now.timestamp(), recorded=recorded)
            return await self._commit(pending, now)

    def track(
        self,
        dossiers: Iterable[Dossier],
        now_ts: float,
        *,
        recorded: dict[str, set[tuple[str, int]]] | None = None,
    ) -> list[tuple[_Entry, str, int, bool]]:
        """The evaluation and scheduling half of `update()`: no I/O; returns the crossings to record.

        Public so the benchmark can time exactly this part; callers other than update() must hold no
        expectation that the returned crossings get recorded.
        """
        with collector_paused():
            return self._track(dossiers, now_ts, recorded)

    def _track(
        self, dossiers: Iterable[Dossier], now_ts: float, recorded: dict[str, set[tuple[str, int]]] | None
    ) -> list[tuple[_Entry, str, int, bool]]:
        pending: list[tuple[_Entry, str, int, bool]] = []
        memo: dict[int, _Verdict] = {}
        entries = self._entries
        live = (DossierStatus.OPEN, DossierStatus.PAUSED)
        calendars = self._calendar_by_key
        for dossier in dossiers:
            code = dossier.code
            if dossier.status not in live:
                self._remove(code)
                continue
            entry = entries.get(code)
            calendar = calendars.get((dossier.unit_code, dossier.procedure_code))
            if calendar is None:
                calendar = self.calendar_for(dossier.unit_code, dossier.procedure_code)
            due = dossier.effective_due_at
            if due is None:
                due = self.due_at(dossier, calendar)
            timeline = None if due is None else self._timeline(calendar, due)
            if entry is None:
                known = recorded.get(code) if recorded is not None else None
                entry = entries[code] = _Entry(dossier, calendar, timeline, "", known or None)
            else:
                self._count(entry, -1)
                entry.dossier, entry.calendar, entry.timeline = dossier, calendar, timeline
            self._evaluate(entry, now_ts, pending, memo)
        self._maybe_compact()
        return pending

    async def replan(
        self,
        calendars: Calendars | None = None,
        thresholds: Sequence[str | WorkingAmount] | None = None,
        now: datetime | None = None,
    ) -> int:
        """Re-plan every tracked dossier after a reload changed the calendars (adopted in place, or
        given) or the thresholds: due and threshold instants are computed again and rescheduled.

        Crossings already recorded stay recorded. A threshold already crossed before the change is not
        announced again when the new plan puts it in the past too (recorded as suppressed under its new
        due time, so a restart does not announce it either). Returns how many crossings were published.
        """
        now = now or self.clock()
        async with self._lock:
            if calendars is not None:
                self.calendars = calendars
            if thresholds is not None:
                self.thresholds = _amounts(thresholds)
            self._calendar_by_key.clear()
            self._amounts.clear()
            self._timelines.clear()
            self._timeline_count = 0
            crossed = {
                code: {name for name, _due in entry.recorded}
                for code, entry in self._entries.items()
                if entry.recorded
            }
            pending = self.track([entry.dossier for entry in self._entries.values()], now.timestamp())
            pending = [
                (entry, name, due_key, suppressed or name in crossed.get(entry.dossier.code, ()))
                for entry, name, due_key, suppressed in pending
            ]
            published = await self._commit(pending, now)
        self._wake.set()
        log.info("deadlines_replanned", tracked=len(self._entries), published=published)
        return published

    def drop(self, codes: Iterable[str]) -> None:
        """Stop tracking (vanished dossiers): their heap entries become stale."""
        for code in codes:
            self._remove(code)

    def finished(self, dossiers: Iterable[tuple[Dossier, str | None]], now: datetime | None = None) -> None:
        """Stop tracking returned or cancelled dossiers and publish DossierFinished for each."""
        now = now or self.clock()
        for dossier, timeliness in dossiers:
            self._remove(dossier.code)
            self.bus.publish(
                DossierFinished(
                    at=now,
                    code=dossier.code,
                    unit_code=dossier.unit_code,
                    timeliness=timeliness or "none",
                    via_postal=dossier.via_postal,
                )
            )

    def _remove(self, code: str) -> None:
        entry = self._entries.pop(code, None)
        if entry is not None:
            self._count(entry, -1)
            entry.version += 1

    def _count(self, entry: _Entry, delta: int) -> None:
        if entry.state:
            key = (entry.dossier.unit_code, entry.dossier.procedure_code, entry.state)
            counts = self.state_counts
            counts[key] += delta
            if not counts[key]:
                del counts[key]

    @staticmethod
    def _verdict(timeline: Timeline, now_ts: float) -> _Verdict:
        """What a timeline means at `now_ts`: the same for every dossier sharing it."""
        # deadline_state() inlined: this runs once per timeline on every evaluation pass.
        deadline = timeline.deadline
        if now_ts >= deadline:
            state = "overdue"
        elif now_ts >= timeline.due_day:
            state = "due_today"
        elif now_ts >= timeline.soon:
            state = "due_soon"
        else:
            state = "on_track"
        next_at = None
        passed: list[str] = []
        for name, ts in timeline.crossings:
            if ts > now_ts:
                next_at = ts
                break
            passed.append(name)
        if now_ts < timeline.due_day and (next_at is None or timeline.due_day < next_at):
            next_at = timeline.due_day
        due_key = round(deadline)
        # Shared key tuples: every dossier's `recorded` set then points at the same few objects.
        return _Verdict(timeline, state, tuple((name, due_key) for name in passed), next_at)

    def _evaluate(
        self,
        entry: _Entry,
        now_ts: float,
        pending: list[tuple[_Entry, str, int, bool]],
        memo: dict[int, _Verdict] | None = None,
    ) -> None:
        """New state, crossings to record, next wake-up. Pure bookkeeping: no I/O.

        `memo` (id of a timeline -> verdict at this `now_ts`) lets one pass over many dossiers compute
        each shared timeline once; 100,000 dossiers typically share about a thousand.
        """
        entry.version += 1
        timeline = entry.timeline
        dossier = entry.dossier
        if timeline is None or dossier.status is DossierStatus.PAUSED:
            # Frozen while paused: no state changes, no crossings, nothing scheduled.
            entry.state = "paused" if dossier.status is DossierStatus.PAUSED else "on_track"
            entry.next_at = None
            self._count(entry, 1)
            return
        if memo is None:
            verdict = self._verdict(timeline, now_ts)
        else:
            verdict = memo.get(id(timeline))  # type: ignore[assignment]
            # The identity check guards against an id reused by a timeline freed during the pass.
            if verdict is None or verdict.timeline is not timeline:
                verdict = memo[id(timeline)] = self._verdict(timeline, now_ts)
        state = entry.state = verdict.state
        # _count() inlined, for the same reason.
        key = (dossier.unit_code, dossier.procedure_code, state)
        counts = self.state_counts
        counts[key] = counts.get(key, 0) + 1
        keys = verdict.passed
        if keys:
            recorded = entry.recorded
            if recorded is None:
                recorded = entry.recorded = set(keys)
                fresh: Sequence[tuple[str, int]] = keys
            else:
                fresh = [key for key in keys if key not in recorded]
                recorded.update(fresh)
            last = len(fresh) - 1
            for index, (name, due_key) in enumerate(fresh):
                pending.append((entry, name, due_key, index != last))
        next_at = entry.next_at = verdict.next_at
        if next_at is not None:
            heap = self._heap
            if not heap or next_at < heap[0][0]:
                self._wake.set()
            heapq.heappush(heap, (next_at, dossier.code, entry.version))

    def _maybe_compact(self) -> None:
        # Stale entries pile up when dossiers change often; rebuild once they dominate the heap.
        if len(self._heap) > 2 * len(self._entries) + 1024:
            self._heap = [
                (entry.next_at, code, entry.version)
                for code, entry in self._entries.items()
                if entry.next_at is not None
            ]
            heapq.heapify(self._heap)

    # --- the timer -----------------------------------------------------------------------------------

    async def run_due(self, now: datetime | None = None) -> int:
        """Process every heap entry due by `now`; returns how many crossings were published."""
        now = now or self.clock()
        now_ts = now.timestamp()
        async with self._lock:
            heap = self._heap
            pending: list[tuple[_Entry, str, int, bool]] = []
            memo: dict[int, _Verdict] = {}
            with collector_paused():
                while heap and heap[0][0] <= now_ts:
                    _, code, version = heapq.heappop(heap)
                    entry = self._entries.get(code)
                    if entry is None or entry.version != version:
                        continue
                    self._count(entry, -1)
                    self._evaluate(entry, now_ts, pending, memo)
            return await self._commit(pending, now)

    def start(self) -> None:
        if self._task is None:
            self._task = self._supervisor.spawn("deadline-timer", self._run_timer)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """Make the timer re-read the clock now (tests moving an injected clock)."""
        self._wake.set()

    async def _run_timer(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock()
            wakeup = self.next_wakeup()
            # Compare epoch floats, as run_due does: a datetime rounded to microseconds could look due
            # while the heap's float is not, and the loop would spin.
            if wakeup is not None and self._heap[0][0] <= now.timestamp():
                try:
                    await self.run_due(now)
                except Exception:
                    log.exception("deadline_timer_failed")
                    await asyncio.sleep(1.0)
                continue
            delay = _MAX_SLEEP if wakeup is None else min(_MAX_SLEEP, self._heap[0][0] - now.timestamp())
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.001))

    # --- recording and publishing --------------------------------------------------------------------

    async def _commit(self, pending: list[tuple[_Entry, str, int, bool]], now: datetime) -> int:
        if not pending:
            return 0
        try:
            return await self._record_and_publish(pending, now)
        except BaseException:
            self._unmark(pending, now)
            raise

    def _unmark(self, pending: list[tuple[_Entry, str, int, bool]], now: datetime) -> None:
        """Forget crossings whose commit failed and evaluate their dossiers again at the next timer pass."""
        now_ts = now.timestamp()
        for entry, name, due_key, _suppressed in pending:
            if entry.recorded is not None:
                entry.recorded.discard((name, due_key))
            if self._entries.get(entry.dossier.code) is entry:
                entry.next_at = now_ts
                heapq.heappush(self._heap, (now_ts, entry.dossier.code, entry.version))
        self._wake.set()

    async def _record_and_publish(self, pending: list[tuple[_Entry, str, int, bool]], now: datetime) -> int:
        crossings: list[NewCrossing] = []
        lefts: list[timedelta] = []
        for entry, name, due_key, suppressed in pending:
            left = timedelta(0)
            overlap: bool | None = None
            incident_ids: tuple[int, ...] = ()
            crossed_at = next(ts for key, ts in entry.timeline.crossings if key == name)  # type: ignore[union-attr]
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
                self.crossings_suppressed += 1
                continue
            dossier = entry.dossier
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
                    is_last_warning=len(entry.timeline.crossings) > 1  # type: ignore[union-attr]
                    and crossing.threshold == entry.timeline.crossings[-2][0],  # type: ignore[union-attr]
                    outage_overlap=crossing.outage_overlap,
                    outage_incident_ids=crossing.outage_incident_ids,
                )
            )
            self.crossings_published[crossing.threshold] += 1
            published += 1
        if published:
            log.info("dossier_crossings_published", count=published)
        return published

    def _target_names(self) -> set[str]:
        targets = self._targets() if callable(self._targets) else self._targets
        return set(targets)

    async def _outage(self, entry: _Entry, due_ts: int) -> tuple[bool, tuple[int, ...]]:
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
