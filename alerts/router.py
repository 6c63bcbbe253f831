"""Events → alerts: the Router turns each event into an occurrence, picks its recipients, stores the alerts.

The parts: alerts/occurrences.py (what an event is about, and its text fields), alerts/recipients.py
(who gets it, on which channels, not before when), alerts/timers.py ("longer than" timers, repeats).

De-duplication is by stable keys, so that handling the same event twice, or re-deriving alerts from the
store after a crash, stores each alert once (the outbox ignores a known key):

    crossing:{crossing_id}:{person}                one per (dossier, threshold, due date, person)
    incident:{id}:down:{person}  incident:{id}:up:{person}   one per (incident, person)
    incident:{id}:down:{person}:r{n}               the n-th repeat while the incident stays open
    degraded:{target}:{since}:{person}             DEGRADED longer than the rule's `after`
    cert:{target}:{expiry date}:{person}           certificate expiring within the rule's `days`
    sync:{source}:{failed_since}:{person}          a dossier source failing or stale longer than `after`

An outage is one message per incident (IncidentOpened), never one per failed probe. "Longer than" timers
live in the `alert_timers` table so a restart neither loses nor repeats them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from alerts.config import AlertsConfig
from alerts.digest import Digest, DigestItem
from alerts.directory import Directory
from alerts.model import AlertKind, AlertSink, NewAlert
from alerts.occurrences import Occurrence, OccurrenceBuilder, certificate_expiry
from alerts.recipients import RecipientPolicy
from alerts.rules import DOSSIER_KINDS, RuleConfig
from alerts.templates import RenderedAlert, Templates
from alerts.timers import (
    OpenIncident,
    Timers,
    cert_warning_timer,
    degraded_timer,
    epoch,
    from_epoch,
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
from monitor.store import SqliteStore

__all__ = ["ROUTED_EVENTS", "Router", "recorded_crossings"]

log = structlog.get_logger("alerts.router")

ROUTED_EVENTS: tuple[type[Event], ...] = (
    TargetStateChanged,
    IncidentOpened,
    IncidentClosed,
    DossierThresholdCrossed,
    DossierSyncFailed,
    DossierSyncRecovered,
)

_AMOUNT = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_HOURS = {"ms": 1 / 3_600_000, "s": 1 / 3600, "m": 1 / 60, "h": 1.0}


class Router:
    """Turns events into `NewAlert`s and puts them in the sink (see the module docstring).

    `occurrences` builds what each event is about, `policy` picks recipients, channels and send times.

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
    ) -> None:
        self.config = config
        self.directory = directory
        self.calendars = calendars
        self.sink = sink
        self.clock = clock
        self.zone = zone
        self.templates = templates if templates is not None else Templates(config.templates)
        self.digest = digest
        self.timers = timers if timers is not None else Timers()
        self.cert_expiry = cert_expiry
        self.occurrences = OccurrenceBuilder(calendars, directory, zone)
        self.policy = RecipientPolicy(config, directory, zone)
        self._open: dict[int, OpenIncident] = {}
        # person id → alerts skipped because no channel could reach them.
        self.unreachable: dict[str, int] = {}
        self.enqueued = 0
        self.digested = 0

    # --- events ---------------------------------------------------------------------------------------

    async def handle(self, event: Event) -> int:
        """Route one event; return how many alerts were new in the sink (or new digest items)."""
        if isinstance(event, DossierThresholdCrossed):
            return await self.route(self.occurrences.crossing(event))
        if isinstance(event, IncidentOpened):
            self._open[event.incident_id] = OpenIncident(
                event.incident_id, event.target, event.at, event.reason, event.detail
            )
            return await self.route(
                self.occurrences.target_down(
                    event.incident_id, event.target, event.at, event.reason, event.detail
                )
            )
        if isinstance(event, IncidentClosed):
            self._open.pop(event.incident_id, None)
            return await self.route(
                self.occurrences.target_recovered(
                    event.incident_id, event.target, event.started_at, event.at, event.duration_seconds
                )
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
        """Fire due timers and repeats; return how many alerts were new."""
        now = now or self.clock()
        added = 0
        rules = {rule.name: rule for rule in self.config.rules}
        fired: list[str] = []
        for timer in self.timers.due(now):
            rule = rules.get(timer.rule)
            if rule is not None:
                added += await self.route(self.occurrences.timer_fired(timer, rule), rules=[rule], now=now)
            fired.append(timer.key)
        # Removed after the alerts are stored: a crash in between re-fires them, and the outbox ignores those.
        await self.timers.remove(fired)
        added += await self._repeats(now)
        return added

    async def _repeats(self, now: datetime) -> int:
        added = 0
        for rule in self.config.rules:
            if rule.repeat is None or AlertKind.TARGET_DOWN not in rule.kinds:
                continue
            for incident in list(self._open.values()):
                if not rule.covers(incident.target):
                    continue
                count = incident.owed_repeat(rule.name, rule.repeat, now)
                if not count:
                    continue
                occurrence = self.occurrences.target_down(
                    incident.incident_id,
                    incident.target,
                    incident.started_at,
                    incident.reason,
                    incident.detail,
                    repeat=count,
                    now=now,
                )
                added += await self.route(occurrence, rules=[rule], now=now, suffix=f":r{count}")
        return added

    # --- routing --------------------------------------------------------------------------------------

    def build(
        self,
        occurrence: Occurrence,
        rules: Sequence[RuleConfig] | None = None,
        *,
        now: datetime | None = None,
        suffix: str = "",
    ) -> tuple[list[NewAlert], list[DigestItem]]:
        """The alerts (and digest items) for one occurrence; the first rule naming a person wins."""
        now = now or self.clock()
        rules = list(rules) if rules is not None else self.policy.rules_for(occurrence.kind, occurrence.name)
        if occurrence.kind in DOSSIER_KINDS:
            calendar = self.calendars.for_dossier(occurrence.unit, occurrence.procedure)
        else:
            calendar = self.calendars.default
        rendered: RenderedAlert | None = None
        alerts: list[NewAlert] = []
        items: list[DigestItem] = []
        seen: set[str] = set()
        base = max(occurrence.event_at, now)
        for rule in rules:
            if occurrence.name is not None and not rule.covers(occurrence.name):
                continue
            severity = rule.severity_for(occurrence.kind)
            for person in self.policy.recipients(rule, occurrence):
                if person.id in seen:
                    continue
                seen.add(person.id)
                channels = self.policy.channels_for(rule, person)
                if not channels:
                    self.unreachable[person.id] = self.unreachable.get(person.id, 0) + 1
                    log.warning(
                        "alert_unreachable", person_id=person.id, kind=occurrence.kind.value, rule=rule.name
                    )
                    continue
                key = f"{occurrence.key}:{person.id}{suffix}"
                if rule.digest and occurrence.kind is AlertKind.DUE_SOON and self.digest is not None:
                    items.append(
                        DigestItem(
                            key,
                            person.id,
                            occurrence.code,
                            occurrence.due_at or occurrence.event_at,
                            occurrence.event_at,
                            channels,
                        )
                    )
                    continue
                if rendered is None:
                    rendered = self.templates.render(occurrence.kind, occurrence.fields, occurrence.keep)
                alerts.append(
                    NewAlert(
                        dedupe_key=key,
                        kind=occurrence.kind,
                        severity=severity,
                        person_id=person.id,
                        channels=channels,
                        text=rendered.text,
                        event_at=occurrence.event_at,
                        not_before=self.policy.not_before(rule, severity, base, calendar),
                        template_params=rendered.template_params,
                        phone=person.phone,
                        zalo_user_id=person.zalo_user_id,
                        subject=occurrence.subject,
                        keep=rendered.keep,
                    )
                )
        return alerts, items

    async def route(
        self,
        occurrence: Occurrence,
        rules: Sequence[RuleConfig] | None = None,
        *,
        now: datetime | None = None,
        suffix: str = "",
    ) -> int:
        """Build an occurrence's alerts and store them (one sink transaction); return how many were new."""
        alerts, items = self.build(occurrence, rules, now=now, suffix=suffix)
        added = 0
        if items and self.digest is not None:
            collected = await self.digest.collect(items)
            self.digested += collected
            added += collected
        if alerts:
            stored = await self.sink.enqueue(alerts)
            self.enqueued += stored
            added += stored
            log.info(
                "alerts_routed",
                kind=occurrence.kind.value,
                subject=occurrence.subject,
                recipients=len(alerts),
                new=stored,
            )
        return added

    # --- start-up -------------------------------------------------------------------------------------

    async def rederive(self, since: datetime, store: SqliteStore, *, thresholds: Sequence[str] = ()) -> int:
        """Re-create the alerts of incidents and crossings recorded since `since` (idempotent: the sink
        ignores known keys), and pick up open incidents for repeats. Returns how many alerts were new.

        Covers a crash between recording an incident or crossing and enqueuing its alerts.
        """
        added = 0
        for incident in await store.open_incidents():
            self._open.setdefault(
                incident.id,
                OpenIncident(
                    incident.id, incident.target, incident.started_at, incident.reason, incident.detail
                ),
            )
        for incident in reversed(await store.incidents(since)):
            if incident.started_at >= since:
                added += await self.route(
                    self.occurrences.target_down(
                        incident.id, incident.target, incident.started_at, incident.reason, incident.detail
                    )
                )
            if incident.ended_at is not None:
                added += await self.route(
                    self.occurrences.target_recovered(
                        incident.id,
                        incident.target,
                        incident.started_at,
                        incident.ended_at,
                        incident.duration_seconds(incident.ended_at),
                    )
                )
        for event in await recorded_crossings(store, since, self.calendars, thresholds):
            added += await self.route(self.occurrences.crossing(event))
        if added:
            log.warning("alerts_rederived", since=since.isoformat(), new=added)
        return added


async def recorded_crossings(
    store: SqliteStore, since: datetime, calendars: Calendars, thresholds: Sequence[str] = ()
) -> list[DossierThresholdCrossed]:
    """Published crossings since `since` of dossiers still open (not paused, finished or vanished), rebuilt
    as events, oldest first.

    Reads `dossier_crossings` and `dossiers` (monitor/dossier_store.py) directly because DossierStore has
    no "crossings since" query yet; replace with it once it exists. `thresholds` are the configured
    warning keys (`dossiers.thresholds`): the smallest one in each dossier's calendar is the last warning.
    """
    exists = await store.reader.execute_fetchall(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dossier_crossings'"
    )
    if not exists:
        return []
    rows = await store.reader.execute_fetchall(
        "SELECT c.id, c.code, c.unit_code, c.threshold, c.due_at, c.crossed_at, c.working_seconds_left,"
        " c.outage_overlap, c.outage_incident_ids, d.unit_name, d.procedure_code, d.procedure_name,"
        " d.assignee_id, d.assignee_name FROM dossier_crossings AS c JOIN dossiers AS d ON d.code = c.code"
        " WHERE c.crossed_at >= ? AND c.suppressed = 0 AND d.status = 'open'"
        " ORDER BY c.crossed_at, c.id",
        (epoch(since),),
    )
    amounts = [(key, _working_amount(key)) for key in thresholds]
    events = []
    for row in rows:
        (crossing_id, code, unit_code, threshold, due_at, crossed_at, left, overlap, incident_ids) = row[:9]
        unit_name, procedure_code, procedure_name, assignee_id, assignee_name = row[9:]
        last = False
        if threshold != "overdue" and amounts:
            hours_per_day = calendars.for_dossier(unit_code, procedure_code or None).hours_per_day
            last = threshold == min(amounts, key=lambda item: item[1][0] * hours_per_day + item[1][1])[0]
        events.append(
            DossierThresholdCrossed(
                at=from_epoch(crossed_at),
                crossing_id=crossing_id,
                code=code,
                unit_code=unit_code,
                unit_name=unit_name,
                procedure_code=procedure_code,
                procedure_name=procedure_name,
                assignee_id=assignee_id,
                assignee_name=assignee_name,
                threshold=threshold,
                due_at=from_epoch(due_at),
                working_time_left=timedelta(seconds=left),
                is_last_warning=last,
                outage_overlap=None if overlap is None else bool(overlap),
                outage_incident_ids=tuple(int(part) for part in incident_ids.split(",") if part),
            )
        )
    return events


def _working_amount(key: str) -> tuple[float, float]:
    """(days, hours) of a threshold key like `2d`, `4h`, `1d4h` (as monitor/dossier_config.py writes them;
    parsed here because that module pulls in the probes package, which alerts must not import)."""
    days = hours = 0.0
    for number, unit in _AMOUNT.findall(key):
        if unit == "d":
            days += float(number)
        else:
            hours += float(number) * _HOURS[unit]
    return days, hours
