"""The alerting side of the daemon: bus events → router → durable outbox → delivery worker.

Start-up order matters for "nothing lost": subscribe to the bus first (events published meanwhile wait
in the subscription), then re-derive the alerts of recently recorded incidents and crossings, then
consume events. Routing, timers, repeats and digests all go through the outbox's INSERT OR IGNORE on
stable keys, so doing something twice stores it once. An event whose routing fails because the store
is locked or full is retried until its alerts are committed, in order; the loops run supervised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from alerts.channels import ChannelDeps, build_channels
from alerts.config import DeliveryConfig
from alerts.delivery import DeliveryWorker
from alerts.digest import Digest
from alerts.directory import Directory, PersonConfig
from alerts.model import AlertSink
from alerts.outbox import Outbox
from alerts.router import ROUTED_EVENTS, Router
from alerts.templates import Templates
from alerts.timers import Timers
from monitor.calendar import Calendars
from monitor.events import Event, EventBus, Subscription
from monitor.store import SqlStore
from monitor.store.durable import until_committed
from monitor.supervisor import Supervisor

if TYPE_CHECKING:
    from alerts.alert_metrics import AlertMetrics
    from alerts.channels.base import Channel
    from monitor.config import Config

__all__ = ["AlertService", "AlertsReload"]

log = structlog.get_logger("alerts.service")

# The error of pending alerts of a person a reload removed from the directory.
REMOVED_PERSON = "not sent: the person was removed from the directory by a config reload"


@dataclass(frozen=True, slots=True)
class AlertsReload:
    """What a reload will change here, every new object already built (`AlertService.prepare_reload`)."""

    config: Config
    directory: Directory
    templates: Templates
    removed_people: tuple[str, ...]
    # People whose phone or Zalo id changed: their pending alerts go to the new contacts.
    readdressed: tuple[PersonConfig, ...] = ()
    # New or changed channels, built and not yet used; removed ones by name.
    channels: Mapping[str, Channel] = field(default_factory=dict)
    removed_channels: tuple[str, ...] = ()
    # Channels or delivery settings changed: the delivery worker restarts (after its in-flight sends).
    restart_worker: bool = False


# Attempts at routing one event that fails for another reason than the store (a bug): after these the
# event is given up (start-up re-derivation recreates alerts of recorded state) so routing goes on.
_ROUTE_ATTEMPTS = 3
# Events routed together at most: their alerts are one outbox transaction, and the first of a storm go out
# while the rest are routed (routing 1,000 crossings holds the event loop for ~0.1 s).
_ROUTE_BATCH = 250
# How often the supervised watcher checks that the delivery worker's loop still runs.
_DELIVERY_WATCH_SECONDS = 1.0


class AlertService:
    """Router + digest + outbox + delivery worker for one daemon. `start()`, then `stop(grace)`.

    `channels` replaces the channels built from config (tests pass channels on fake gateways);
    `sink` replaces the outbox (then no delivery worker runs); `cert_expiry(target)` may give a
    target's certificate notAfter (epoch seconds) from the scheduler. `leader()` (replicas: whether this
    member is the elected one) gates timers, reminders and digests (alerts/router.py, alerts/digest.py).
    """

    def __init__(
        self,
        config: Config,
        store: SqlStore,
        bus: EventBus,
        calendars: Calendars,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        channels: Mapping[str, Channel] | None = None,
        sink: AlertSink | None = None,
        metrics: AlertMetrics | None = None,
        cert_expiry: Callable[[str], float | None] | None = None,
        supervisor: Supervisor | None = None,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self._supervisor = supervisor or Supervisor()
        self.config = config
        self.alerts = config.alerts
        self.store = store
        self.bus = bus
        self.calendars = calendars
        self.clock = clock
        self.directory = Directory(self.alerts.directory)
        self.templates = Templates(self.alerts.templates)
        delivery = getattr(self.alerts, "delivery", None) or DeliveryConfig()
        self.outbox: Outbox | None = (
            Outbox(store, clock, claim_lease=delivery.claim_lease) if sink is None else None
        )
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
            leader=leader,
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
            leader=leader,
        )
        self.router.digest = self.digest
        self._leader = leader
        # Whether this member re-derived since it started (at start when it led, else when it first led).
        self._rederived = False
        self._given_channels = channels
        self._metrics = metrics
        self._deps: ChannelDeps | None = None
        self.channels: dict[str, Any] = {}
        self.worker: DeliveryWorker | None = None
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._worker_swapping = False
        self._group_scheduled = asyncio.Event()
        self.router.groups.on_change = self._group_scheduled.set

    def now(self) -> datetime:
        return self.clock()

    async def start(self) -> None:
        self._subscription = self.bus.subscribe("alerts", *ROUTED_EVENTS)
        await self.router.load()
        # Replicas: only the leader re-derives at start. It is idempotent by key under the routing lock,
        # but N members each reading two days of incidents and crossings and queueing on that lock is
        # N times the work for nothing. A member that leads only later (the leader started after the
        # others, or took the lock from one that failed) re-derives then: the daemon's catch_up when a
        # member it knew is gone (monitor/daemon.py `_follow_ownership`), else its first tick as leader
        # (`tick`), which also covers a member gone before this one joined, never seen leaving.
        if self._leads():
            await self._rederive()
        self.directory.report_unmatched()
        if self.outbox is not None:
            self._start_channels()
            delivery = getattr(self.alerts, "delivery", None) or DeliveryConfig()
            self.worker = DeliveryWorker(
                self.outbox, self.channels, delivery, self.clock, metrics=self._metrics
            )
            await self.worker.start()
        subscription = self._subscription
        self._tasks = [
            self._supervisor.spawn("alert-router", lambda: self._consume(subscription)),
            self._supervisor.spawn("alert-ticks", self._tick_forever),
        ]
        if self.worker is not None:
            self._tasks.append(self._supervisor.spawn("alert-delivery", self._watch_delivery))
        log.info(
            "alerts_started",
            channels=len(self.channels),
            people=len(self.directory.people),
            rules=len(self.alerts.rules),
        )

    def _leads(self) -> bool:
        return self._leader is None or self._leader()

    async def _rederive(self) -> int:
        thresholds = getattr(getattr(self.config, "dossiers", None), "thresholds", ())
        since = self.now() - self.alerts.rederive_window
        # Marked first: a catch-up and a tick arriving together re-derive once.
        self._rederived = True
        try:
            return await self.router.rederive(since, self.store, thresholds=thresholds)
        except BaseException:
            self._rederived = False
            raise

    async def catch_up(self) -> int:
        """Replicas, on the leader once a member is gone: store the alerts of the incidents and crossings
        it recorded but had not routed (re-derived; known keys are ignored), and fire its outage groups
        and timers that are due now rather than at the next tick (the tick's sleep only knows this
        member's groups, so a dead member's would wait up to `tick_interval`). Returns alerts stored."""
        return await self._rederive() + await self.tick()

    def _start_channels(self) -> None:
        if self._given_channels is not None:
            self.channels = dict(self._given_channels)
            return
        self._deps = ChannelDeps(kv=self.store)
        self.channels = build_channels(self.alerts.channels, self._deps)

    # --- reload ----------------------------------------------------------------------------------------

    async def prepare_reload(self, config: Config) -> AlertsReload:
        """Build what `config`'s `alerts:` section changes without touching anything running; raises on a
        channel that cannot be built (then nothing built is left open)."""
        section = config.alerts
        directory = Directory(section.directory)
        kept = {person.id for person in directory.people}
        removed_people = tuple(person.id for person in self.directory.people if person.id not in kept)
        readdressed = tuple(
            person
            for person in directory.people
            if (old_person := self.directory.person(person.id)) is not None
            and (old_person.phone, old_person.zalo_user_id) != (person.phone, person.zalo_user_id)
        )
        old = {channel.name: channel for channel in self.alerts.channels}
        changed = [channel for channel in section.channels if old.get(channel.name) != channel]
        names = {channel.name for channel in section.channels}
        removed_channels = tuple(name for name in old if name not in names)
        built: dict[str, Channel] = {}
        if self._deps is not None and changed:
            # Zalo channels whose settings changed get their own token manager (a new app secret).
            apps = {getattr(channel, "app_id", None) for channel in changed}
            # The copy shares the transport (created now if no channel needed one yet), so the
            # service's own `_deps.aclose()` still closes it.
            self._deps.get_transport()
            deps = replace(
                self._deps,
                token_managers={k: v for k, v in self._deps.token_managers.items() if k not in apps},
            )
            try:
                built = dict(build_channels(changed, deps))
            except Exception:
                for channel in built.values():
                    await channel.close()
                raise
            self._deps.token_managers.update(deps.token_managers)
        delivery_changed = section.delivery != self.alerts.delivery
        return AlertsReload(
            config=config,
            directory=directory,
            templates=Templates(section.templates),
            removed_people=removed_people,
            readdressed=readdressed,
            channels=built,
            removed_channels=removed_channels,
            restart_worker=bool(changed or removed_channels or delivery_changed),
        )

    async def discard_reload(self, prepared: AlertsReload) -> None:
        """Close what `prepare_reload` built (another section's preparation failed)."""
        for channel in prepared.channels.values():
            await channel.close()

    async def apply_reload(self, prepared: AlertsReload, grace: float = 10.0) -> None:
        """Swap in a prepared reload. Alerts already in the outbox stay; pending ones of removed people
        fail with REMOVED_PERSON; changed channels replace the old ones once in-flight sends finished."""
        self.config = prepared.config
        self.alerts = prepared.config.alerts
        self.directory = prepared.directory
        self.templates = prepared.templates
        self.router.reconfigure(self.alerts, self.directory, self.templates)
        self.digest.reconfigure(
            self.alerts.digest, self.directory, self.templates, self.router.policy.schedule_digest
        )
        if prepared.removed_people:
            cancelled = 0
            if self.outbox is not None:
                cancelled = await self.outbox.cancel_for_people(prepared.removed_people, REMOVED_PERSON)
            await self.digest.drop_people(prepared.removed_people)
            await self.router.groups.drop_people(
                [person.id for person in self.directory.people], self.now(), self.alerts.rederive_window
            )
            log.info("alerts_people_removed", people=len(prepared.removed_people), cancelled=cancelled)
        if prepared.readdressed and self.outbox is not None:
            for person in prepared.readdressed:
                await self.outbox.readdress(person.id, person.phone, person.zalo_user_id)
        if prepared.restart_worker and self.worker is not None and self._given_channels is None:
            await self._restart_worker(prepared, grace)

    async def _restart_worker(self, prepared: AlertsReload, grace: float) -> None:
        assert self.outbox is not None and self.worker is not None
        # The watcher must not restart the old worker while it stops on purpose.
        self._worker_swapping = True
        try:
            await self._swap_worker(prepared, grace)
        finally:
            self._worker_swapping = False

    async def _swap_worker(self, prepared: AlertsReload, grace: float) -> None:
        assert self.outbox is not None and self.worker is not None
        # In-flight sends finish on the old channels first (within grace; the rest go out again later).
        await self.worker.stop(grace)
        old = self.channels
        names = [channel.name for channel in self.alerts.channels]
        self.channels = {name: prepared.channels.get(name) or old[name] for name in names}
        for name, channel in old.items():
            if self.channels.get(name) is not channel:
                await channel.close()
        self.worker = DeliveryWorker(
            self.outbox, self.channels, self.alerts.delivery, self.clock, metrics=self._metrics
        )
        await self.worker.start()
        log.info(
            "alert_channels_reloaded", changed=sorted(prepared.channels), removed=prepared.removed_channels
        )

    async def _consume(self, subscription: Subscription) -> None:
        closed = False
        while not closed and (event := await subscription.get()) is not None:
            # Whatever else is already queued goes with it: a storm of crossings is one outbox commit.
            events = [event]
            while subscription.backlog and len(events) < _ROUTE_BATCH:
                queued = await subscription.get()
                if queued is None:
                    closed = True
                    break
                events.append(queued)
            await self._route(events)
            if subscription.backlog == 0:
                # The end of a batch (a sync publishes its crossings at once): one summary line.
                self.directory.report_unmatched()

    async def _route(self, events: list[Event]) -> None:
        for attempt in range(1, _ROUTE_ATTEMPTS + 1):
            try:
                # A locked or full store is waited out here: these alerts are durable facts. Safe to repeat
                # after a partial failure: the outbox ignores keys it already has.
                await until_committed(self.store.facts, "outbox", lambda: self.router.handle_many(events))
                return
            except Exception:
                if attempt == _ROUTE_ATTEMPTS:
                    # Not lost for good: start-up re-derivation recreates alerts of recorded state.
                    # (structlog's first argument is the event name: the kind goes under another key.)
                    log.exception("alert_routing_failed", kind=type(events[0]).__name__, events=len(events))
                else:
                    await asyncio.sleep(0.2 * attempt)

    async def _watch_delivery(self) -> None:
        """Keep the delivery worker's loop (its own task) running. A crash of the loop is raised here, so
        the supervisor logs its traceback, counts the restart and /readyz names `alert-delivery` until the
        next run of this watcher starts the loop again."""
        while True:
            worker = self.worker
            if worker is not None and not self._worker_swapping:
                crash = worker.take_crash()
                if crash is not None:
                    raise crash
                if not worker.running:
                    await worker.start()
            await asyncio.sleep(_DELIVERY_WATCH_SECONDS)

    async def tick(self, now: datetime | None = None) -> int:
        """Timers, repeats and digests due by `now` (the loop calls this every `tick_interval`); on a
        member leading for the first time since it started, the start's re-derivation first (see
        `start`). Returns alerts stored."""
        now = now or self.now()
        added = await self._rederive() if not self._rederived and self._leads() else 0
        return added + await self.router.tick(now) + await self.digest.tick(now)

    async def _tick_forever(self) -> None:
        while True:
            # Read each time: a reload may change it.
            interval = self.alerts.tick_interval.total_seconds()
            try:
                await self.tick()
            except Exception:
                log.exception("alert_tick_failed")
            await self._sleep_until_next_tick(interval)

    async def _sleep_until_next_tick(self, interval: float) -> None:
        """Sleep `interval`, or less when an outage group's message is due sooner: a group's first
        message goes out at its group_wait, not up to a tick later. A new group wakes the sleep."""
        self._group_scheduled.clear()
        due = self.router.groups.next_fire()
        if due is not None:
            # At least a second: a tick that keeps failing must not spin.
            interval = min(interval, max(1.0, (due - self.now()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._group_scheduled.wait(), timeout=interval)

    async def stop(self, grace: float = 10.0) -> None:
        """Route the events already received (within `grace`), stop the worker, close the channels."""
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if task.get_name() in ("alert-ticks", "alert-delivery"):
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
