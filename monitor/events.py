"""The in-process event bus: typed events, several independent consumers.

Every subscriber has its own unbounded queue, so a slow consumer (alert delivery) never delays
a fast one (metrics) and never makes a publisher wait. Publishing is synchronous and cheap so that
it can happen on the probe path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.model import FailureReason, Health

__all__ = [
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


class Subscription:
    """One consumer's view of the bus: an async iterator over the events it asked for."""

    def __init__(self, bus: EventBus, name: str, kinds: tuple[type[Event], ...] | None) -> None:
        self.name = name
        self.kinds = kinds
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._bus = bus

    def wants(self, event: Event) -> bool:
        return self.kinds is None or isinstance(event, self.kinds)

    def deliver(self, event: Event | None) -> None:
        self._queue.put_nowait(event)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def get(self) -> Event | None:
        """The next event, or None once the bus is closed."""
        return await self._queue.get()

    def close(self) -> None:
        self._bus.unsubscribe(self)
        self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while (event := await self._queue.get()) is not None:
            yield event


class EventBus:
    """Fan-out of typed events to every subscription that wants them."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.published = 0

    def subscribe(self, name: str, *kinds: type[Event]) -> Subscription:
        subscription = Subscription(self, name, kinds or None)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, event: Event) -> None:
        self.published += 1
        for subscription in self._subscriptions:
            if subscription.wants(event):
                subscription.deliver(event)

    def close(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)
