"""The in-process event bus: typed events, several independent consumers.

Every subscriber has its own bounded queue, so a slow consumer (alert routing) never delays a fast one
and memory stays bounded while a consumer is stalled (a locked store). What happens when a queue is full
depends on the event: `publish()` (synchronous, cheap, for the probe path) drops the event and counts it
in `dropped`; `publish_durable()` awaits space. Durable facts (incidents, crossings) go through the
latter, after they are committed: their alerts are re-derived from the store after a restart, so nothing
is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from monitor.model import FailureReason, Health

__all__ = [
    "QUEUE_LIMIT",
    "DossierFinished",
    "DossierSyncFailed",
    "DossierSyncRecovered",
    "DossierThresholdCrossed",
    "DossierVanished",
    "Event",
    "EventBus",
    "IncidentClosed",
    "IncidentOpened",
    "Subscription",
    "TargetStateChanged",
]

log = structlog.get_logger("monitor.events")


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event on the bus; `at` is timezone aware."""

    at: datetime


@dataclass(frozen=True, slots=True)
class TargetStateChanged(Event):
    """A target moved between UP, DEGRADED and DOWN after thresholds were applied."""

    target: str
    previous: Health
    current: Health
    reason: FailureReason | None
    detail: str = ""
    # Epoch seconds of the earliest certificate expiry the last probe saw, when TLS was used.
    cert_expiry: float | None = None


@dataclass(frozen=True, slots=True)
class IncidentOpened(Event):
    """A target entered DOWN outside maintenance."""

    incident_id: int
    target: str
    reason: FailureReason | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class IncidentClosed(Event):
    """A target that was DOWN recovered; `started_at` and `duration_seconds` describe the incident."""

    incident_id: int
    target: str
    started_at: datetime
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class DossierThresholdCrossed(Event):
    """A dossier's working time left fell to a warning threshold, or it turned overdue.

    `threshold` is the configured key (`2d`, `4h`) or `overdue`. `crossing_id` is the store's id of the
    recorded crossing: alerting de-duplicates on it. For `overdue`, `outage_overlap` says whether an
    incident of the dossier-system targets overlapped the dossier's last working day before `due_at`.
    Carries dossier codes and officer ids, never applicant data.
    """

    crossing_id: int
    code: str
    unit_code: str
    unit_name: str
    procedure_code: str
    procedure_name: str
    assignee_id: str
    assignee_name: str
    threshold: str
    due_at: datetime
    working_time_left: timedelta
    # The last warning before overdue: escalate to the unit head (apology slip due a working day ahead).
    is_last_warning: bool = False
    outage_overlap: bool | None = None
    outage_incident_ids: tuple[int, ...] = ()

    @property
    def overdue(self) -> bool:
        return self.threshold == "overdue"


@dataclass(frozen=True, slots=True)
class DossierFinished(Event):
    """A dossier was returned (or cancelled); timeliness is early, on_time, late or none (cancelled)."""

    code: str
    unit_code: str
    timeliness: str
    via_postal: bool


@dataclass(frozen=True, slots=True)
class DossierVanished(Event):
    """A dossier was missing from several full reconciles in a row: not finished, just gone from view."""

    code: str
    unit_code: str
    source: str


@dataclass(frozen=True, slots=True)
class DossierSyncFailed(Event):
    """A sync from a dossier source failed; nothing changed because of it."""

    source: str
    reason: str
    message: str
    consecutive_failures: int
    last_success_at: datetime | None


@dataclass(frozen=True, slots=True)
class DossierSyncRecovered(Event):
    """A source synced successfully after one or more failures."""

    source: str
    failed_since: datetime


# Events one subscriber may have waiting; about 10 MB of events at worst.
QUEUE_LIMIT = 20_000


class Subscription:
    """One consumer's view of the bus: an async iterator over the events it asked for."""

    def __init__(
        self, bus: EventBus, name: str, kinds: tuple[type[Event], ...] | None, limit: int = QUEUE_LIMIT
    ) -> None:
        self.name = name
        self.kinds = kinds
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=limit)
        self._bus = bus
        self._closed = False

    def wants(self, event: Event) -> bool:
        return self.kinds is None or isinstance(event, self.kinds)

    def deliver(self, event: Event) -> bool:
        """Queue the event if there is room; False when the queue is full (the event is not kept)."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    async def deliver_waiting(self, event: Event) -> None:
        """Queue the event, waiting for room (a durable fact must not be dropped)."""
        if not self._closed:
            await self._queue.put(event)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def get(self) -> Event | None:
        """The next event, or None once the bus is closed."""
        return await self._queue.get()

    def close(self) -> None:
        self._bus.unsubscribe(self)
        self._closed = True
        # A full queue ends by itself: the consumer stops once it has drained it (see _iterate).
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while not (self._closed and self._queue.empty()):
            event = await self._queue.get()
            if event is None:
                return
            yield event


class EventBus:
    """Fan-out of typed events to every subscription that wants them."""

    def __init__(self, queue_limit: int = QUEUE_LIMIT) -> None:
        self._subscriptions: list[Subscription] = []
        self.queue_limit = queue_limit
        self.published = 0
        self.dropped = 0

    def subscribe(self, name: str, *kinds: type[Event]) -> Subscription:
        subscription = Subscription(self, name, kinds or None, self.queue_limit)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, event: Event) -> None:
        """Hand the event to every subscription that wants it, without waiting; a full one misses it."""
        self.published += 1
        for subscription in self._subscriptions:
            if subscription.wants(event) and not subscription.deliver(event):
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("event_dropped", subscriber=subscription.name, kind=type(event).__name__)

    async def publish_durable(self, event: Event) -> None:
        """Hand a durable fact (already committed) to every subscription, waiting while one is full."""
        self.published += 1
        for subscription in list(self._subscriptions):
            if subscription.wants(event):
                await subscription.deliver_waiting(event)

    def close(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)
