"""The scheduler's incidents, from a probe's verdict to the store and the bus, in order and never lost.

The probe path only queues an incident's open or close; a single writer task commits them in order and
gives each its store id before IncidentOpened/IncidentClosed are published. It retries each write until
it is committed (a locked or full disk delays it, never drops it), so its alerts go out once the store is
back. The queue is bounded without losing an incident: a target with `MAX_PENDING_INCIDENT_WRITES`
waiting (its outage's open and close) is held back from probing (`held_back`) until they are committed,
so a store outage holds at most that many per target.

An incident open when the monitor stopped (cleanly or not) is closed at start at its target's last probe
before the stop (`suspend`): the monitor cannot say the target was down while nobody watched. The first
probe after the restart decides the rest (`decide_suspended`): still failing, the same incident opens
again (same id, no new alert) and the time the monitor was off stays out of its downtime, because
downtime is clipped to monitored time (monitor/store/monitored.py); succeeding, it stays closed there and
IncidentClosed is published with that end (recovered while unmonitored).
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog

from monitor.events import EventBus, IncidentClosed, IncidentOpened
from monitor.model import FailureReason, ProbeOutcome
from monitor.state import TargetTracker
from monitor.store.base import Incident, Store
from monitor.store.durable import until_committed
from monitor.supervisor import Supervisor

__all__ = ["MAX_PENDING_INCIDENT_WRITES", "IncidentWriter"]

log = structlog.get_logger("monitor.scheduler")

# Incident writes one target may have waiting for the store: an outage's open and its close.
MAX_PENDING_INCIDENT_WRITES = 2


@dataclass(slots=True)
class _IncidentHandle:
    """One incident from the moment it opens; the store id arrives once the writer has inserted it."""

    target: str
    started_at: datetime
    id: int | None = None
    # Closed at a restart, at the last probe before the stop, until the first probe after it decides.
    suspended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _IncidentWork:
    handle: _IncidentHandle
    opening: bool
    at: datetime
    reason: FailureReason | None
    detail: str
    # Open again an incident suspended at a restart (its target is still down).
    reopen: bool = False


class IncidentWriter:
    """The open incident of each target probed here, and the queue and task writing them."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        # Per target: incident writes queued and not yet committed (bounded, see the module docstring).
        self._pending: collections.Counter[str] = collections.Counter()
        self._queue: asyncio.Queue[_IncidentWork | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._open: dict[str, _IncidentHandle] = {}
        # Targets whose first probe after a restart decides a suspended incident.
        self._suspended: set[str] = set()

    def start(self, supervisor: Supervisor) -> None:
        self._task = supervisor.spawn("incident-writer", self._write_all)

    @property
    def waiting(self) -> int:
        """Incident writes queued for the writer task."""
        return self._queue.qsize()

    def held_back(self, target: str) -> bool:
        """Whether `target` waits for its incidents to be committed before it is probed again."""
        return self._pending[target] >= MAX_PENDING_INCIDENT_WRITES

    def open_id(self, target: str) -> int | None:
        """The store id of `target`'s open incident (None when none, or not written yet)."""
        handle = self._open.get(target)
        return handle.id if handle else None

    async def suspend(self, incidents: Iterable[Incident]) -> dict[int, datetime]:
        """Close every incident left open by the last run at its target's last probe before the stop."""
        ended: dict[int, datetime] = {}
        for incident in incidents:
            at = await self.store.interrupted_at(incident.target, incident.started_at)
            close = functools.partial(self.store.close_incident, incident.id, at)
            await until_committed(self.store.facts, "incident", close)
            ended[incident.id] = at
            log.info("incident_suspended", target=incident.target, incident_id=incident.id, at=at.isoformat())
        return ended

    def resume(self, incident: Incident, suspended_at: datetime) -> None:
        """Continue a suspended incident: the target's first probe here decides it."""
        self._open[incident.target] = _IncidentHandle(
            incident.target, incident.started_at, incident.id, suspended_at
        )
        self._suspended.add(incident.target)

    def forget(self, target: str) -> None:
        """Leave `target`'s open incident to another member, open (replicas)."""
        self._suspended.discard(target)
        self._open.pop(target, None)

    def decide_suspended(self, tracker: TargetTracker, outcome: ProbeOutcome, at: datetime) -> None:
        """The first probe after a restart: still down continues the incident, up ends it (see top)."""
        if tracker.name not in self._suspended:
            return
        self._suspended.discard(tracker.name)
        handle = self._open.get(tracker.name)
        if handle is None or handle.suspended_at is None:
            return
        if outcome.success:
            # Recovered while unmonitored: this one success is the recovery, however many are required.
            tracker.successes_in_row = max(0, tracker.success_threshold - 1)
            return
        handle.suspended_at = None
        self._put(_IncidentWork(handle, True, at, outcome.reason, outcome.detail, reopen=True))

    def queue(self, target: str, *, opening: bool, at: datetime, outcome: ProbeOutcome | None) -> None:
        """Queue the open or close of `target`'s incident (a close with none open does nothing)."""
        if opening:
            handle = _IncidentHandle(target, at)
            self._open[target] = handle
        else:
            handle = self._open.pop(target, None)
            if handle is None:
                return
            # A suspended incident already ended at the last probe before the stop.
            at = handle.suspended_at or at
        reason = outcome.reason if outcome else None
        detail = outcome.detail if outcome else ""
        self._put(_IncidentWork(handle, opening, at, reason, detail))

    def _put(self, work: _IncidentWork) -> None:
        self._pending[work.handle.target] += 1
        self._queue.put_nowait(work)

    async def _write_all(self) -> None:
        while (work := await self._queue.get()) is not None:
            try:
                await self._write(work)
            finally:
                target = work.handle.target
                self._pending[target] -= 1
                if self._pending[target] <= 0:
                    del self._pending[target]

    async def _write(self, work: _IncidentWork) -> None:
        handle = work.handle
        reason = work.reason.value if work.reason else None
        facts = self.store.facts
        if work.reopen:
            if handle.id is not None:
                reopened = handle.id
                await until_committed(facts, "incident", lambda: self.store.reopen_incident(reopened))
                log.warning("incident_continued", target=handle.target, incident_id=reopened, reason=reason)
            return
        if work.opening:
            handle.id = await until_committed(
                facts,
                "incident",
                lambda: self.store.open_incident(handle.target, work.at, reason, work.detail),
            )
            log.warning("incident_opened", target=handle.target, incident_id=handle.id, reason=reason)
            await self.bus.publish_durable(
                IncidentOpened(work.at, handle.id, handle.target, work.reason, work.detail)
            )
            return
        incident_id = handle.id
        if incident_id is None:
            return
        await until_committed(facts, "incident", lambda: self.store.close_incident(incident_id, work.at))
        duration = (work.at - handle.started_at).total_seconds()
        log.info("incident_closed", target=handle.target, incident_id=incident_id, duration_seconds=duration)
        await self.bus.publish_durable(
            IncidentClosed(work.at, incident_id, handle.target, handle.started_at, duration)
        )

    async def stop(self, grace: float) -> None:
        """Write what is queued, within `grace` seconds (at least one), then end the writer task."""
        self._queue.put_nowait(None)
        if self._task is not None:
            try:
                # Incidents still waiting for a locked store get the grace period too.
                await asyncio.wait_for(self._task, timeout=max(grace, 1.0))
            except TimeoutError:
                log.error("incident_writes_cut_short", waiting=self._queue.qsize())
