"""The alerting side of the daemon: bus events → router → durable outbox → delivery worker.

Start-up order matters for "nothing lost": subscribe to the bus first (events published meanwhile wait
in the subscription), then re-derive the alerts of recently recorded incidents and crossings, then
consume events. Routing, timers, repeats and digests all go through the outbox's INSERT OR IGNORE on
stable keys, so doing something twice stores it once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from alerts.channels import ChannelDeps, build_channels
from alerts.config import DeliveryConfig
from alerts.delivery import DeliveryWorker
from alerts.digest import Digest
from alerts.directory import Directory
from alerts.model import AlertSink
from alerts.outbox import Outbox
from alerts.router import ROUTED_EVENTS, Router
from alerts.templates import Templates
from alerts.timers import Timers
from monitor.calendar import Calendars
from monitor.events import EventBus, Subscription
from monitor.store import SqliteStore

if TYPE_CHECKING:
    from alerts.alert_metrics import AlertMetrics
    from alerts.channels.base import Channel
    from monitor.config import Config

__all__ = ["AlertService"]

log = structlog.get_logger("alerts.service")

# Attempts at routing one event before giving up on it (start-up re-derivation catches it later).
_ROUTE_ATTEMPTS = 3


class AlertService:
    """Router + digest + outbox + delivery worker for one daemon. `start()`, then `stop(grace)`.

    `channels` replaces the channels built from config (tests pass channels on fake gateways);
    `sink` replaces the outbox (then no delivery worker runs); `cert_expiry(target)` may give a
    target's certificate notAfter (epoch seconds) from the scheduler.
    """

    def __init__(
        self,
        config: Config,
        store: SqliteStore,
        bus: EventBus,
        calendars: Calendars,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        channels: Mapping[str, Channel] | None = None,
        sink: AlertSink | None = None,
        metrics: AlertMetrics | None = None,
        cert_expiry: Callable[[str], float | None] | None = None,
    ) -> None:
        self.config = config
        self.alerts = config.alerts
        self.store = store
        self.bus = bus
        self.calendars = calendars
        self.clock = clock
        self.directory = Directory(self.alerts.directory)
        self.templates = Templates(self.alerts.templates)
        self.outbox: Outbox | None = Outbox(store, clock) if sink is None else None
        self.sink: AlertSink = sink if sink is not None else self.outbox  # type: ignore[assignment]
        self.timers = Timers(store)
        self.router = Router(
            self.alerts,
            self.directory,
            calendars,
            self.sink,
            clock,
            config.zone,
            templates=self.templates,
            timers=self.timers,
            cert_expiry=cert_expiry,
        )
        self.digest = Digest(
            self.alerts.digest,
            store,
            self.sink,
            self.directory,
            calendars,
            self.templates,
            config.zone,
            schedule=self.router.policy.schedule_digest,
        )
        self.router.digest = self.digest
        self._given_channels = channels
        self._metrics = metrics
        self._deps: ChannelDeps | None = None
        self.channels: dict[str, Any] = {}
        self.worker: DeliveryWorker | None = None
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def now(self) -> datetime:
        return self.clock()

    async def start(self) -> None:
        self._subscription = self.bus.subscribe("alerts", *ROUTED_EVENTS)
        await self.timers.load()
        thresholds = getattr(getattr(self.config, "dossiers", None), "thresholds", ())
        since = self.now() - self.alerts.rederive_window
        await self.router.rederive(since, self.store, thresholds=thresholds)
        if self.outbox is not None:
            self._start_channels()
            delivery = getattr(self.alerts, "delivery", None) or DeliveryConfig()
            self.worker = DeliveryWorker(
                self.outbox, self.channels, delivery, self.clock, metrics=self._metrics
            )
            await self.worker.start()
        self._tasks = [
            asyncio.create_task(self._consume(self._subscription), name="alert-router"),
            asyncio.create_task(self._tick_forever(), name="alert-ticks"),
        ]
        log.info(
            "alerts_started",
            channels=len(self.channels),
            people=len(self.directory.people),
            rules=len(self.alerts.rules),
        )

    def _start_channels(self) -> None:
        if self._given_channels is not None:
            self.channels = dict(self._given_channels)
            return
        self._deps = ChannelDeps(kv=self.store)
        self.channels = build_channels(self.alerts.channels, self._deps)

    async def _consume(self, subscription: Subscription) -> None:
        async for event in subscription:
            for attempt in range(1, _ROUTE_ATTEMPTS + 1):
                try:
                    await self.router.handle(event)
                    break
                except Exception:
                    if attempt == _ROUTE_ATTEMPTS:
                        # Not lost for good: start-up re-derivation recreates alerts of recorded state.
                        log.exception("alert_routing_failed", event=type(event).__name__)
                    else:
                        await asyncio.sleep(0.2 * attempt)

    async def tick(self, now: datetime | None = None) -> int:
        """Timers, repeats and digests due by `now` (the loop calls this every `tick_interval`)."""
        now = now or self.now()
        return await self.router.tick(now) + await self.digest.tick(now)

    async def _tick_forever(self) -> None:
        interval = self.alerts.tick_interval.total_seconds()
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("alert_tick_failed")
            await asyncio.sleep(interval)

    async def stop(self, grace: float = 10.0) -> None:
        """Route the events already received (within `grace`), stop the worker, close the channels."""
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if task.get_name() == "alert-ticks":
                task.cancel()
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=grace)
            except TimeoutError:
                log.warning("alert_routing_cut_short")
            except asyncio.CancelledError:
                pass
        if self.worker is not None:
            await self.worker.stop(grace)
            self.worker = None
        if self._given_channels is None:
            for channel in self.channels.values():
                await channel.close()
        if self._deps is not None:
            await self._deps.aclose()
            self._deps = None
        log.info("alerts_stopped")
