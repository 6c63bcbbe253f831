"""Runs every target on its own interval, never overlapping itself, under a global concurrency limit.

Fairness (monitor.probe_slots): a probe still running after `park_after` gives its slot back and waits
for its peer in a parked slot, and targets known to be slow share at most half of the slots, so hanging
targets never hold the slots of the targets that answer; those keep their interval. Admission: when the
configured targets need more slots than exist on average (Σ timeout ÷ interval > max_concurrency) a
warning is logged and tthc_scheduler_saturation exported at start and on every reload.

The probe path does no I/O besides the probe: results go to the store's in-memory buffer, state
changes to the event bus, and incidents to a single writer task (monitor/incident_writer.py: in order,
never lost, bounded per target; an incident open at the last stop is suspended until the first probe
after the restart decides it). A target whose incident writes wait for the store is not probed again
until they are committed; the probes held back are counted (tthc_probes_held_back_total), like the raw
samples the store may drop.

With replicas, the daemon hands the scheduler the targets this member owns (`reassign`): a target given
up keeps its incident open for its new owner, a target taken over resumes from the store as after a
restart.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from pydantic import Field

from monitor.configtypes import Duration, StrictModel
from monitor.events import EventBus, TargetStateChanged
from monitor.incident_writer import IncidentWriter
from monitor.maintenance import in_maintenance
from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.probe_slots import ProbeSlots
from monitor.state import TargetTracker
from monitor.store.base import ProbeResult, Store
from monitor.supervisor import Supervisor
from monitor.targets import HttpTarget, TcpTarget
from probes import ProbeContext, run_probe

__all__ = [
    "Scheduler",
    "SchedulerConfig",
    "scheduler_saturation",
]


class SchedulerConfig(StrictModel):
    """The `scheduler:` section."""

    max_concurrency: int = Field(default=256, ge=1)
    shutdown_grace: Duration = timedelta(seconds=10)
    # Spread first runs over this fraction of each interval so targets do not fire together.
    start_jitter: float = Field(default=1.0, ge=0, le=1)


log = structlog.get_logger("monitor.scheduler")

Target = HttpTarget | TcpTarget

# A probe that used at least this share of its timeout marks its target slow until a quicker one.
_SLOW_SHARE = 0.5
# A probe still running after this long (or half its timeout, if shorter) is waiting on a silent peer
# and gives its slot back (ProbeSlots.park). Healthy probes on a LAN finish well within it.
_PARK_AFTER = 0.5


def scheduler_saturation(targets: Sequence[Target], max_concurrency: int) -> float:
    """Σ(timeout ÷ interval) ÷ max_concurrency: the share of slots the targets would hold if every probe
    ran to its timeout. Above 1, hanging targets alone can take every slot."""
    demand = sum(target.timeout / target.interval for target in targets)
    return demand / max_concurrency


class Scheduler:
    """Owns the per-target loops, their trackers, and probe_success / probe_duration_seconds."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        zone: ZoneInfo,
        max_concurrency: int = 256,
        start_jitter: float = 1.0,
        observe_lateness: Callable[[float], None] = lambda _seconds: None,
        report_saturation: Callable[[float], None] = lambda _share: None,
        count_held_back: Callable[[], None] = lambda: None,
        parked_limit: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        supervisor: Supervisor | None = None,
    ) -> None:
        self.store = store
        self._supervisor = supervisor or Supervisor()
        self.bus = bus
        self.zone = zone
        self.start_jitter = start_jitter
        self.trackers: dict[str, TargetTracker] = {}
        self.targets: dict[str, Target] = {}
        self.running = False
        self._observe_lateness = observe_lateness
        self._report_saturation = report_saturation
        self._count_held_back = count_held_back
        self._clock = clock
        self.max_concurrency = max_concurrency
        self.slots = ProbeSlots(max_concurrency, parked_limit)
        # Targets whose last probe timed out or used half its timeout (see ProbeSlots).
        self.slow: set[str] = set()
        # One dispatcher over a heap of (due, seq, name, generation) rather than a sleeping task per
        # target: between runs a target costs one tuple, which the garbage collector never walks.
        self._heap: list[tuple[float, int, str, int]] = []
        self._sequence = itertools.count()
        self._generation: dict[str, int] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._in_flight: set[str] = set()
        self._context = ProbeContext()
        self.incidents = IncidentWriter(store, bus)

    async def start(self, targets: Sequence[Target], *, elsewhere: Collection[str] = ()) -> None:
        """Resume health and open incidents from the store, then start one loop per target.

        `elsewhere` (replicas): targets other members own; their open incidents are theirs to continue,
        left untouched here. Open incidents of targets no longer configured are closed as before.
        """
        self._admit(targets)
        await self._resume(targets, skip=set(elsewhere), only=False)
        self.incidents.start(self._supervisor)
        self.running = True
        self._dispatcher = self._supervisor.spawn("probe-dispatcher", self._dispatch)

    async def reassign(self, targets: Sequence[Target]) -> None:
        """Ownership changed (replicas): probe exactly `targets` from now on.

        A target given up keeps its open incident open: its new owner continues it. A target taken over
        resumes from the store as after a restart (monitor/incident_writer.py): its open incident is
        closed at the last stored probe, and its first probe here either continues it (same id, no new
        alert) or ends it there. Targets kept are left as they are.
        """
        wanted = {target.name: target for target in targets}
        for name in [name for name in self.trackers if name not in wanted]:
            self._release(name)
        gained = [target for name, target in wanted.items() if name not in self.trackers]
        self._admit(targets)
        if gained:
            await self._resume(gained, skip=set(), only=True)
            log.info("targets_taken_over", count=len(gained), owned=len(self.trackers))

    def _release(self, name: str) -> None:
        """Stop probing a target another member now owns, without closing its incident."""
        self.trackers.pop(name, None)
        self.targets.pop(name, None)
        # Heap entries are skipped (no generation); a probe in flight finds no tracker and is dropped.
        self._generation.pop(name, None)
        self.slow.discard(name)
        self.incidents.forget(name)

    async def _resume(self, targets: Sequence[Target], *, skip: set[str], only: bool) -> None:
        """Trackers for `targets` from the stored health and open incidents (suspended, see
        monitor/incident_writer.py), each scheduled. Incidents of targets in `skip` are left alone; with
        `only`, so are those of every target not in `targets`."""
        latest = await self.store.latest_health()
        names = {target.name for target in targets}
        open_incidents = {
            incident.target: incident
            for incident in await self.store.open_incidents()
            if incident.target not in skip and (incident.target in names or not only)
        }
        suspended_at = await self.incidents.suspend(open_incidents.values())
        for target in targets:
            tracker = self._tracker_for(target)
            incident = open_incidents.get(target.name)
            health = latest.get(target.name, Health.UNKNOWN)
            if incident is None and health is Health.DOWN:
                # An incident's close is committed before the health that follows it is flushed, so a
                # crash in between leaves DOWN stored with no open incident. The committed close is the
                # truth: resuming DOWN would open a new incident at once and close it on the next probe.
                health = Health.UNKNOWN
            if incident is not None:
                self.incidents.resume(incident, suspended_at[incident.id])
            if incident is not None or health is not Health.UNKNOWN:
                tracker.resume(health, incident.started_at if incident else None)
            self._schedule_first(target)

    def _admit(self, targets: Sequence[Target]) -> None:
        saturation = scheduler_saturation(targets, self.max_concurrency)
        self._report_saturation(saturation)
        if saturation > 1:
            log.warning(
                "scheduler_saturated",
                saturation=round(saturation, 3),
                max_concurrency=self.max_concurrency,
                hint="probes that hang until their timeout would need more slots than exist: raise"
                " scheduler.max_concurrency, lengthen intervals or shorten timeouts",
            )

    def _tracker_for(self, target: Target) -> TargetTracker:
        tracker = self.trackers.get(target.name)
        if tracker is None:
            tracker = TargetTracker(target.name)
            self.trackers[target.name] = tracker
        tracker.failure_threshold = target.failure_threshold
        tracker.success_threshold = target.success_threshold
        self.targets[target.name] = target
        return tracker

    def _schedule_first(self, target: Target) -> None:
        generation = self._generation.get(target.name, 0) + 1
        self._generation[target.name] = generation
        delay = random.uniform(0, target.interval.total_seconds() * self.start_jitter)
        self._push(asyncio.get_running_loop().time() + delay, target.name, generation)

    def _push(self, due: float, name: str, generation: int) -> None:
        heapq.heappush(self._heap, (due, next(self._sequence), name, generation))
        if self._heap[0][2] == name and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def reload(self, targets: Sequence[Target]) -> None:
        """Apply a new target list: drop removed ones, reschedule changed ones, keep their health."""
        wanted = {target.name: target for target in targets}
        self._admit(targets)
        for name in list(self.trackers):
            if name not in wanted:
                tracker = self.trackers.pop(name)
                self.targets.pop(name, None)
                # Heap entries of a removed target are skipped: their generation no longer matches.
                self._generation.pop(name, None)
                self.slow.discard(name)
                if tracker.incident_open:
                    # A removed target's outage is over as far as this monitor can tell.
                    self.incidents.queue(name, opening=False, at=self._clock(), outcome=None)
        for name, target in wanted.items():
            if target != self.targets.get(name) or name not in self._generation:
                self._tracker_for(target)
                self._schedule_first(target)

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        heap = self._heap
        while self.running:
            now = loop.time()
            while heap and heap[0][0] <= now:
                due, _seq, name, generation = heapq.heappop(heap)
                if self._generation.get(name) != generation:
                    continue
                target = self.targets[name]
                interval = target.interval.total_seconds()
                next_due = due + interval
                if next_due <= now:
                    # Never burst to catch up: skip the missed runs and keep the original phase.
                    next_due += ((now - next_due) // interval + 1) * interval
                heapq.heappush(heap, (next_due, next(self._sequence), name, generation))
                if name in self._probes:
                    continue  # still running: a target never overlaps itself
                if self.incidents.held_back(name):
                    self._count_held_back()  # its incidents wait for the store: keep the queue bounded
                    continue
                self._probes[name] = loop.create_task(self._run(target, due), name=f"probe:{name}")
            self._wake = loop.create_future()
            timer = loop.call_at(heap[0][0], _wake_up, self._wake) if heap else None
            try:
                await self._wake
            finally:
                if timer is not None:
                    timer.cancel()
                self._wake = None

    async def _run(self, target: Target, due: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            held = await self.slots.hold(slow=target.name in self.slow)
            # A timer, not a task: parking costs nothing for the probes that finish in time.
            park_after = min(_PARK_AFTER, target.timeout.total_seconds() * _SLOW_SHARE)
            parking = loop.call_later(park_after, self.slots.park, held)
            try:
                self._observe_lateness(max(0.0, loop.time() - due))
                self._in_flight.add(target.name)
                await self._probe_once(target)
            finally:
                parking.cancel()
                self.slots.release(held)
        finally:
            self._in_flight.discard(target.name)
            self._probes.pop(target.name, None)

    async def _probe_once(self, target: Target) -> None:
        started = time.perf_counter()
        try:
            # The prober enforces target.timeout; this outer bound only guards against a prober bug.
            async with asyncio.timeout(target.timeout.total_seconds() + 5):
                outcome = await run_probe(target, self._context)
        except TimeoutError:
            outcome = ProbeOutcome(success=False, reason=FailureReason.TIMEOUT, detail="probe overran")
        duration = time.perf_counter() - started
        if (
            outcome.reason is FailureReason.TIMEOUT
            or duration >= target.timeout.total_seconds() * _SLOW_SHARE
        ):
            self.slow.add(target.name)
        else:
            self.slow.discard(target.name)
        self.observe(target, outcome, duration, self._clock())

    def observe(self, target: Target, outcome: ProbeOutcome, duration: float, at: datetime) -> None:
        """Apply one outcome: tracker, store buffer, events. Synchronous: nothing here may wait."""
        tracker = self.trackers.get(target.name)
        if tracker is None:
            return
        maintenance = in_maintenance(target.maintenance, at, self.zone)
        self.incidents.decide_suspended(tracker, outcome, at)
        transition = tracker.observe(outcome, at, duration, maintenance)
        self.store.record(
            ProbeResult(
                target=target.name,
                at=at,
                duration=duration,
                outcome=outcome,
                health=tracker.health,
                in_maintenance=maintenance,
                changed=transition.changed,
            )
        )
        if transition.changed:
            log.info(
                "target_state_changed",
                target=target.name,
                previous=transition.previous.value,
                current=transition.current.value,
                reason=outcome.reason.value if outcome.reason else None,
                detail=outcome.detail,
                in_maintenance=maintenance,
            )
            self.bus.publish(
                TargetStateChanged(
                    at=at,
                    target=target.name,
                    previous=transition.previous,
                    current=transition.current,
                    reason=outcome.reason,
                    detail=outcome.detail,
                    cert_expiry=outcome.cert_expiry,
                )
            )
        if transition.open_incident:
            self.incidents.queue(tracker.name, opening=True, at=at, outcome=outcome)
        elif transition.close_incident:
            self.incidents.queue(tracker.name, opening=False, at=at, outcome=outcome)

    def open_incident_id(self, target: str) -> int | None:
        return self.incidents.open_id(target)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def stop(self, grace: float) -> None:
        """Stop taking work, let in-flight probes finish for up to `grace` seconds, cancel the rest."""
        self.running = False
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        if self._dispatcher is not None:
            await self._dispatcher
        waiting = list(self._probes.values())
        if waiting:
            _done, pending = await asyncio.wait(waiting, timeout=grace)
            for task in pending:
                log.warning("probe_cancelled_at_shutdown", target=task.get_name().removeprefix("probe:"))
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.incidents.stop(grace)
        await self._context.close()


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
