"""Events → alerts: the Router turns each event into an occurrence, picks its recipients, stores the alerts.

The parts: alerts/occurrences.py (what an event is about, and its text fields), alerts/recipients.py
(who gets it, on which channels, not before when), alerts/alert_builder.py (the alerts of an occurrence
or an outage group's message), alerts/timers.py ("longer than" timers), alerts/grouping.py and
alerts/outage_routing.py (outages, their reminders included). The Router decides when each is due and
stores them.

De-duplication is by stable keys, so that handling the same event twice, or re-deriving alerts from the
store after a crash, stores each alert once (the outbox ignores a known key):

    crossing:{crossing_id}:{person}                one per (dossier, threshold, due date, person)
    incident:{id}:down:{person}  incident:{id}:up:{person}   one per (incident, person)
    incident:{id}:down:{person}:r{n}               the n-th reminder (`repeat`) while the outage lasts
    degraded:{target}:{since}:{person}             DEGRADED longer than the rule's `after`
    cert:{target}:{expiry date}:{person}           certificate expiring within the rule's `days`
    sync:{source}:{failed_since}:{person}          a dossier source failing or stale longer than `after`

An outage is one message per incident (IncidentOpened), never one per failed probe, and targets that go
down together are grouped into one message per person (alerts/grouping.py: a group keeps its first
incident's keys, follow-ups add `:g{n}`, and one reminder per `repeat` names the targets still down).
"Longer than" timers and pending groups live in the
`alert_timers` table so a restart neither loses nor repeats them.

Replicas: `leader()` (default: always) says whether this member fires timers, group messages and
reminders in `tick`; only the elected member does. Any member routes the events of its own targets and
sources. With a `leader` given, every change to timers and groups starts from the table and is made by
one member at a time (alerts/shared_state.py), so the member elected next fires what the last one left.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from alerts.alert_builder import AlertBuilder
from alerts.config import AlertsConfig
from alerts.digest import Digest, DigestItem
from alerts.directory import Directory
from alerts.grouping import GROUP_PREFIX, Member, OutageGroups
from alerts.model import AlertKind, AlertSink, NewAlert
from alerts.occurrences import Occurrence, OccurrenceBuilder, certificate_expiry
from alerts.outage_routing import OutageRouter
from alerts.recipients import RecipientPolicy
from alerts.recorded import recorded_crossings, told_of_incidents
from alerts.rules import RuleConfig
from alerts.shared_state import SharedRoutingState
from alerts.templates import Templates
from alerts.timers import (
    Timers,
    cert_warning_timer,
    degraded_timer,
    sync_timer,
)
from monitor.calendar import Calendars
from monitor.events import (
    DossierSyncFailed,
    DossierSyncRecovered,
    DossierThresholdCrossed,
    Event,
    IncidentClosed,
    IncidentOpened,
    TargetStateChanged,
)
from monitor.model import FailureReason, Health
from monitor.store import SqlStore

__all__ = ["ROUTED_EVENTS", "Router", "recorded_crossings"]

log = structlog.get_logger("alerts.router")


def _always() -> bool:
    return True


ROUTED_EVENTS: tuple[type[Event], ...] = (
    TargetStateChanged,
    IncidentOpened,
    IncidentClosed,
    DossierThresholdCrossed,
    DossierSyncFailed,
    DossierSyncRecovered,
)


class Router:
    """Turns events into `NewAlert`s and puts them in the sink (see the module docstring).

    `alerts` (an `AlertBuilder`) builds the alerts: its `occurrences` what each event is about, its
    `policy` recipients, channels and send times.

    `clock` gives the current aware time (scheduling, repeats); `zone` is the config's timezone (quiet
    hours, dates in texts). `digest` (optional) receives due-soon alerts of rules with `digest: true`;
    without it they are sent one by one. `timers` keeps "longer than" timers (memory only by default).
    `cert_expiry(target)` may give a target's certificate notAfter (epoch seconds); otherwise the
    expiry is read from the probe's detail text.
    """

    def __init__(
        self,
        config: AlertsConfig,
        directory: Directory,
        calendars: Calendars,
        sink: AlertSink,
        clock: Callable[[], datetime],
        zone: ZoneInfo,
        *,
        templates: Templates | None = None,
        digest: Digest | None = None,
        timers: Timers | None = None,
        cert_expiry: Callable[[str], float | None] | None = None,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.calendars = calendars
        self.sink = sink
        self.clock = clock
        self.zone = zone
        # person id → alerts skipped because no channel could reach them.
        self.unreachable: dict[str, int] = {}
        templates = templates if templates is not None else Templates(config.templates)
        self.alerts = AlertBuilder(config, directory, calendars, zone, templates, self.unreachable)
        self.digest = digest
        self.timers = timers if timers is not None else Timers()
        self.groups = OutageGroups(self.timers)
        self.outages = OutageRouter(self.groups, self._enqueue)
        self.cert_expiry = cert_expiry
        # Several members share the tables: what this one holds in memory may be stale (see above).
        self.leader: Callable[[], bool] = leader or _always
        self.state = SharedRoutingState(self.timers.store, self.load, shared=leader is not None)
        self.enqueued = 0
        self.digested = 0

    def reconfigure(self, config: AlertsConfig, directory: Directory, templates: Templates) -> None:
        """Take a reloaded `alerts:` section (synchronous: no event is routed half with each)."""
        self.config = config
        self.alerts = AlertBuilder(config, directory, self.calendars, self.zone, templates, self.unreachable)

    @property
    def directory(self) -> Directory:
        return self.alerts.directory

    @property
    def templates(self) -> Templates:
        return self.alerts.templates

    @property
    def occurrences(self) -> OccurrenceBuilder:
        return self.alerts.occurrences

    @property
    def policy(self) -> RecipientPolicy:
        return self.alerts.policy

    # --- events ---------------------------------------------------------------------------------------

    async def handle(self, event: Event) -> int:
        """Route one event; return how many alerts were new in the sink (or new digest items)."""
        if isinstance(event, DossierThresholdCrossed):
            return await self.route(self.occurrences.crossing(event))
        if isinstance(event, IncidentOpened):
            return await self.incident_opened(
                Member(event.incident_id, event.target, event.at, event.reason, event.detail)
            )
        if isinstance(event, IncidentClosed):
            return await self.incident_closed(
                Member(event.incident_id, event.target, event.started_at, None, "", ended_at=event.at)
            )
        if isinstance(event, TargetStateChanged):
            return await self._state_changed(event)
        if isinstance(event, DossierSyncFailed):
            await self._sync_failed(event)
            return 0
        if isinstance(event, DossierSyncRecovered):
            await self.timers.cancel((AlertKind.SYNC_FAILING,), event.source)
            return 0
        return 0

    async def _state_changed(self, event: TargetStateChanged) -> int:
        if event.current is not Health.DEGRADED:
            await self.timers.cancel((AlertKind.TARGET_DEGRADED,), event.target)
            if event.current is Health.UP:
                # A healthy certificate again: it was renewed.
                await self.timers.cancel((AlertKind.CERT_EXPIRING,), event.target)
            return 0
        if event.reason is FailureReason.CERT_EXPIRING:
            return await self._cert_expiring(event)
        for rule in self.policy.rules_for(AlertKind.TARGET_DEGRADED, event.target):
            await self.timers.start(degraded_timer(event, rule))
        return 0

    async def _cert_expiring(self, event: TargetStateChanged) -> int:
        expiry = certificate_expiry(event, self.cert_expiry)
        if expiry is None:
            log.warning("cert_expiry_unknown", target=event.target)
            return 0
        added = 0
        for rule in self.policy.rules_for(AlertKind.CERT_EXPIRING, event.target):
            warn_at = expiry - timedelta(days=rule.cert_days)
            if warn_at <= event.at:
                added += await self.route(
                    self.occurrences.cert_expiring(event.target, expiry, event.at, event.detail), rules=[rule]
                )
                continue
            # The probe warns earlier than this rule wants to: warn when the rule's window begins.
            await self.timers.start(cert_warning_timer(event, rule, expiry, warn_at))
        return added

    async def _sync_failed(self, event: DossierSyncFailed) -> None:
        for rule in self.policy.rules_for(AlertKind.SYNC_FAILING, event.source):
            await self.timers.start(sync_timer(event, rule), update_data=True)

    # --- periodic work --------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> int:
        """Fire due timers and outage groups (reminders included); return how many alerts were new.

        Only on the leader; with replicas, from the timers and groups as the table holds them."""
        if not self.leader():
            return 0
        async with self.state.current():
            return await self._fire(now or self.clock())

    async def _fire(self, now: datetime) -> int:
        """`tick`'s work: due timers, then due group messages and reminders."""
        added = 0
        rules = {rule.name: rule for rule in self.config.rules}
        fired: list[str] = []
        for timer in self.timers.due(now):
            if timer.key.startswith(GROUP_PREFIX):
                continue
            rule = rules.get(timer.rule)
            if rule is not None:
                added += await self.route(self.occurrences.timer_fired(timer, rule), rules=[rule], now=now)
            fired.append(timer.key)
        # Removed after the alerts are stored: a crash in between re-fires them, and the outbox ignores those.
        await self.timers.remove(fired)
        added += await self.flush_groups(now)
        await self.groups.forget(now)
        return added

    # --- outages, grouped (alerts/outage_routing.py) ------------------------------------------------

    async def incident_opened(
        self, member: Member, now: datetime | None = None, told: Collection[str] = ()
    ) -> int:
        """`OutageRouter.opened` with the section in force; return how many alerts were new."""
        return await self.outages.opened(member, self.alerts, self.config, now or self.clock(), told)

    async def incident_closed(self, member: Member, now: datetime | None = None) -> int:
        """`OutageRouter.closed` with the section in force; return how many alerts were new."""
        return await self.outages.closed(member, self.alerts, self.config, now or self.clock())

    async def flush_groups(self, now: datetime) -> int:
        """`OutageRouter.flush` with the section in force; return how many alerts were new."""
        return await self.outages.flush(self.alerts, self.config, now)

    async def _enqueue(self, alerts: list[NewAlert]) -> int:
        """Store alerts in the sink (one transaction); return how many were new."""
        stored = await self.sink.enqueue(alerts)
        self.enqueued += stored
        return stored

    # --- routing --------------------------------------------------------------------------------------

    def build(
        self,
        occurrence: Occurrence,
        rules: Sequence[RuleConfig] | None = None,
        *,
        now: datetime | None = None,
    ) -> tuple[list[NewAlert], list[DigestItem]]:
        """The alerts (and digest items, when there is a digest) for one occurrence (`AlertBuilder.build`)."""
        return self.alerts.build(occurrence, rules, now=now or self.clock(), digest=self.digest is not None)

    async def route(
        self,
        occurrence: Occurrence,
        rules: Sequence[RuleConfig] | None = None,
        *,
        now: datetime | None = None,
    ) -> int:
        """Build an occurrence's alerts and store them (one sink transaction); return how many were new."""
        return await self.route_many([occurrence], rules, now=now)

    async def route_many(
        self,
        occurrences: Sequence[Occurrence],
        rules: Sequence[RuleConfig] | None = None,
        *,
        now: datetime | None = None,
    ) -> int:
        """`route` for several occurrences with one sink transaction for all their alerts (a storm of
        crossings from one sync is one commit, not one per dossier)."""
        alerts: list[NewAlert] = []
        items: list[DigestItem] = []
        for occurrence in occurrences:
            built, waiting = self.build(occurrence, rules, now=now)
            alerts.extend(built)
            items.extend(waiting)
        added = 0
        if items and self.digest is not None:
            collected = await self.digest.collect(items)
            self.digested += collected
            added += collected
        if alerts:
            stored = await self._enqueue(alerts)
            added += stored
            first = occurrences[0]
            log.info(
                "alerts_routed",
                kind=first.kind.value,
                subject=first.subject if len(occurrences) == 1 else f"{len(occurrences)} occurrences",
                recipients=len(alerts),
                new=stored,
            )
        return added

    async def handle_many(self, events: Sequence[Event]) -> int:
        """`handle` each event in order; consecutive crossings are routed together (`route_many`)."""
        # Crossings change no timer or group: with replicas, only other events wait for the state.
        touches_state = any(not isinstance(event, DossierThresholdCrossed) for event in events)
        async with self.state.current(touches_state):
            return await self._handle_all(events)

    async def _handle_all(self, events: Sequence[Event]) -> int:
        """`handle_many`'s work."""
        added = 0
        crossings: list[Occurrence] = []
        for event in events:
            if isinstance(event, DossierThresholdCrossed):
                crossings.append(self.occurrences.crossing(event))
                continue
            if crossings:
                added += await self.route_many(crossings)
                crossings = []
            added += await self.handle(event)
        if crossings:
            added += await self.route_many(crossings)
        return added

    # --- start-up -------------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the timers and outage groups back from the store (first thing at start-up)."""
        await self.timers.load()
        repeats = {rule.name: rule.repeat for rule in self.config.rules}
        self.groups.load(repeats.get)

    async def rederive(self, since: datetime, store: SqlStore, *, thresholds: Sequence[str] = ()) -> int:
        """Re-create the alerts of incidents and crossings recorded since `since` (idempotent: the sink
        ignores known keys). Returns how many alerts were new.

        Covers a crash between recording an incident or crossing and enqueuing its alerts.
        """
        added = 0
        told = await told_of_incidents(store)
        async with self.state.current():
            for incident in reversed(await store.incidents(since)):
                member = Member(
                    incident.id, incident.target, incident.started_at, incident.reason, incident.detail
                )
                if incident.started_at >= since:
                    added += await self.incident_opened(member, told=told.get(incident.id, ()))
                if incident.ended_at is not None:
                    added += await self.incident_closed(replace(member, ended_at=incident.ended_at))
        added += await self.handle_many(await recorded_crossings(store, since, self.calendars, thresholds))
        if added:
            log.warning("alerts_rederived", since=since.isoformat(), new=added)
        return added
