"""The deadline engine: working time left, deadline state and threshold crossings of every open dossier.

Crossings are scheduled, not searched for: each tracked dossier sits in the timer schedule at the next
instant its state changes (a threshold crossing, the start of its due day, its due time). One timer
task sleeps until the earliest instant. A dossier that changes (new due date, pause, resume) is
scheduled again; its older slot goes stale and is skipped when its instant comes (see
`monitor.dossiers.schedule`), so nothing is ever rescanned per tick.

Crossings found are recorded and published by `monitor.dossiers.publishing`, at most once each even
across restarts. Should the record fail (other than a locked or full disk, which is retried), the
crossings are unmarked in memory and their dossiers re-evaluated, so a crossing is never taken as
recorded before its commit. A dossier first seen past several thresholds publishes the deepest one and
records the shallower ones as suppressed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from operator import attrgetter

import structlog

from monitor.calendar import Calendars, WorkingCalendar
from monitor.dossiers.config import WorkingAmount, parse_working_amount
from monitor.dossiers.model import Dossier, DossierStatus, collector_paused
from monitor.dossiers.publishing import CrossingPublisher, PendingCrossing
from monitor.dossiers.schedule import Schedule, TrackedEntry
from monitor.dossiers.store import DossierStore, Timeline
from monitor.dossiers.timelines import DeadlinePlanner, Verdict, deadline_state
from monitor.events import DossierFinished, EventBus
from monitor.store.sql import SqlStore
from monitor.supervisor import Supervisor

__all__ = ["DeadlineEngine", "deadline_state"]

log = structlog.get_logger("monitor.dossiers.engine")

# The timer re-reads the clock at least this often, so a clock that jumps (suspend, tests) is noticed.
_MAX_SLEEP = 30.0
_OPEN, _PAUSED = DossierStatus.OPEN, DossierStatus.PAUSED
_BY_CODE = attrgetter("dossier.code")


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
        self.planner = DeadlinePlanner(calendars, thresholds)
        self.dossier_store = dossier_store
        self.store = store
        self.bus = bus
        self.clock = clock
        self.publisher = CrossingPublisher(
            dossier_store,
            store,
            bus,
            dossier_system_targets,
            outage_window
            if isinstance(outage_window, WorkingAmount)
            else parse_working_amount(outage_window),
        )
        self._entries: dict[str, TrackedEntry] = {}
        self._schedule = Schedule()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # (unit, procedure, state) -> tracked dossiers; kept current on every evaluation.
        self.state_counts: Counter[tuple[str, str, str]] = Counter()

    # --- calendars, timelines and what was published (see monitor.dossiers.timelines) ----------------

    @property
    def calendars(self) -> Calendars:
        return self.planner.calendars

    @property
    def thresholds(self) -> tuple[WorkingAmount, ...]:
        return self.planner.thresholds

    @property
    def outage_window(self) -> WorkingAmount:
        return self.publisher.outage_window

    @property
    def crossings_published(self) -> Counter[str]:
        return self.publisher.published

    @property
    def crossings_suppressed(self) -> int:
        return self.publisher.suppressed

    def calendar_for(self, unit_code: str, procedure_code: str) -> WorkingCalendar:
        return self.planner.calendar_for(unit_code, procedure_code)

    def due_at(self, dossier: Dossier, calendar: WorkingCalendar | None = None) -> datetime | None:
        """The effective due time, computed in working time when the source gives only a duration."""
        return self.planner.due_at(dossier, calendar)

    def timeline(self, dossier: Dossier) -> Timeline | None:
        """When the dossier's state changes (shared by every dossier with the same calendar and due time)."""
        return self.planner.timeline(dossier)

    def working_time_left(self, dossier: Dossier, now: datetime | None = None) -> timedelta | None:
        return self.planner.working_time_left(dossier, now or self.clock())

    def classify(self, dossier: Dossier) -> str | None:
        """early / on_time / late for a returned dossier (OpenCPS half-day rule); None when it cannot be."""
        return self.planner.classify(dossier)

    # --- tracking ------------------------------------------------------------------------------------

    @property
    def tracked(self) -> int:
        return len(self._entries)

    def state_of(self, code: str) -> str | None:
        entry = self._entries.get(code)
        return None if entry is None else entry.state

    def next_wakeup(self) -> datetime | None:
        """The earliest instant some tracked dossier changes state."""
        instant = self._schedule.earliest()
        return None if instant is None else datetime.fromtimestamp(instant, UTC)

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
    ) -> list[PendingCrossing]:
        """The evaluation and scheduling half of `update()`: no I/O; returns the crossings to record.

        Public so the benchmark can time exactly this part; callers other than update() must hold no
        expectation that the returned crossings get recorded.
        """
        with collector_paused():
            return self._track(dossiers, now_ts, recorded)

    def _track(
        self, dossiers: Iterable[Dossier], now_ts: float, recorded: dict[str, set[tuple[str, int]]] | None
    ) -> list[PendingCrossing]:
        pending: list[PendingCrossing] = []
        memo: dict[int, Verdict] = {}
        entries = self._entries
        plan = self.planner.plan
        evaluate = self._evaluate
        for dossier in dossiers:
            code = dossier.code
            status = dossier.status
            if status is not _OPEN and status is not _PAUSED:
                self._remove(code)
                continue
            calendar, timeline = plan(dossier)
            entry = entries.get(code)
            if entry is None:
                known = recorded.get(code) if recorded is not None else None
                entry = entries[code] = TrackedEntry(
                    dossier, calendar, timeline, "", tuple(known) if known else None
                )
            else:
                self._count(entry, -1)
                entry.dossier, entry.calendar, entry.timeline = dossier, calendar, timeline
            evaluate(entry, now_ts, pending, memo)
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
            self.planner.reset(calendars, thresholds)
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
        """Stop tracking (vanished dossiers): their schedule slots become stale."""
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
            entry.next_at = None

    def _count(self, entry: TrackedEntry, delta: int) -> None:
        if entry.state:
            key = (entry.dossier.unit_code, entry.dossier.procedure_code, entry.state)
            counts = self.state_counts
            counts[key] += delta
            if not counts[key]:
                del counts[key]

    def _evaluate(
        self,
        entry: TrackedEntry,
        now_ts: float,
        pending: list[PendingCrossing],
        memo: dict[int, Verdict] | None = None,
    ) -> None:
        """New state, crossings to record, next instant scheduled. Pure bookkeeping: no I/O.

        `memo` (id of a timeline -> verdict at this `now_ts`) lets one pass over many dossiers compute
        each shared timeline once; a million dossiers typically share a few thousand.
        """
        timeline = entry.timeline
        dossier = entry.dossier
        if timeline is None or dossier.status is _PAUSED:
            # Frozen while paused: no state changes, no crossings, nothing scheduled.
            entry.state = "paused" if dossier.status is _PAUSED else "on_track"
            entry.next_at = None
            self._count(entry, 1)
            return
        if memo is None:
            verdict = Verdict.at(timeline, now_ts)
        else:
            verdict = memo.get(id(timeline))  # type: ignore[assignment]
            # The identity check guards against an id reused by a timeline freed during the pass.
            if verdict is None or verdict.timeline is not timeline:
                verdict = memo[id(timeline)] = Verdict.at(timeline, now_ts)
        state = entry.state = verdict.state
        # _count() inlined: this runs once per dossier on every evaluation pass.
        key = (dossier.unit_code, dossier.procedure_code, state)
        counts = self.state_counts
        counts[key] = counts.get(key, 0) + 1
        keys = verdict.passed
        if keys:
            recorded = entry.recorded
            fresh: tuple[tuple[str, int], ...]
            if recorded is None:
                fresh = entry.recorded = keys
            elif recorded is keys:
                fresh = ()
            else:
                fresh = tuple(key for key in keys if key not in recorded)
                if fresh:
                    # When what was recorded is part of this verdict, share the verdict's tuple.
                    entry.recorded = keys if len(recorded) + len(fresh) == len(keys) else recorded + fresh
            last = len(fresh) - 1
            for index, (name, due_key) in enumerate(fresh):
                pending.append((entry, name, due_key, index != last))
        next_at = entry.next_at = verdict.next_at
        if next_at is not None and self._schedule.push(entry, next_at):
            self._wake.set()

    def _maybe_compact(self) -> None:
        # Stale slots pile up when dossiers change often; rebuild once they dominate the schedule.
        if len(self._schedule) > 2 * len(self._entries) + 1024:
            self._schedule.rebuild(self._entries.values())

    # --- the timer -----------------------------------------------------------------------------------

    async def run_due(self, now: datetime | None = None) -> int:
        """Evaluate every dossier scheduled by `now`; returns how many crossings were published."""
        now = now or self.clock()
        now_ts = now.timestamp()
        async with self._lock:
            pending: list[PendingCrossing] = []
            memo: dict[int, Verdict] = {}
            with collector_paused():
                for entry in sorted(self._schedule.pop_due(now_ts), key=_BY_CODE):
                    next_at = entry.next_at
                    # A dossier scheduled twice at one instant: its second slot, already re-planned.
                    if next_at is None or next_at > now_ts:
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
            wakeup = self._schedule.earliest()
            # Compare epoch floats, as run_due does: a datetime rounded to microseconds could look due
            # while the schedule's float is not, and the loop would spin.
            if wakeup is not None and wakeup <= now.timestamp():
                try:
                    await self.run_due(now)
                except Exception:
                    log.exception("deadline_timer_failed")
                    await asyncio.sleep(1.0)
                continue
            delay = _MAX_SLEEP if wakeup is None else min(_MAX_SLEEP, wakeup - now.timestamp())
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.001))

    # --- recording ----------------------------------------------------------------------------------

    async def _commit(self, pending: list[PendingCrossing], now: datetime) -> int:
        if not pending:
            return 0
        try:
            return await self.publisher.record_and_publish(pending, now)
        except BaseException:
            self._unmark(pending, now)
            raise

    def _unmark(self, pending: list[PendingCrossing], now: datetime) -> None:
        """Forget crossings whose commit failed and evaluate their dossiers again at the next timer pass."""
        now_ts = now.timestamp()
        for entry, name, due_key, _suppressed in pending:
            if entry.recorded is not None:
                entry.recorded = tuple(key for key in entry.recorded if key != (name, due_key)) or None
            if self._entries.get(entry.dossier.code) is entry:
                entry.next_at = now_ts
                self._schedule.push(entry, now_ts)
        self._wake.set()
