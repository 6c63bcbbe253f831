"""Occurrences → `NewAlert`s: who gets one, on which channels, with which text, not before when.

No I/O and no state besides the count of people no channel reaches: the Router (alerts/router.py) decides
when an occurrence or an outage group's message is due and stores what this builds. The first rule naming
a person wins; a person none of whose channels can reach them is counted in `unreachable` and skipped.
De-duplication keys are `{occurrence key}:{person}` (the table in the Router's docstring); an outage
group's keys come from the group (alerts/grouping.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from alerts.config import AlertsConfig
from alerts.digest import DigestItem
from alerts.directory import Directory, PersonConfig
from alerts.grouping import Member, OutageGroup, group_text
from alerts.model import AlertKind, NewAlert, deliver_by
from alerts.occurrences import Occurrence, OccurrenceBuilder
from alerts.recipients import RecipientPolicy
from alerts.rules import DOSSIER_KINDS, RuleConfig
from alerts.templates import RenderedAlert, Templates
from monitor.calendar import Calendars

__all__ = ["AlertBuilder"]

log = structlog.get_logger("alerts.router")


class AlertBuilder:
    """The alerts of one `alerts:` section: `occurrences` says what an event is about, `policy` picks
    recipients, channels and send times, `templates` the text. `unreachable` (person id → alerts
    skipped because no channel could reach them) is shared with the builders of later reloads."""

    def __init__(
        self,
        config: AlertsConfig,
        directory: Directory,
        calendars: Calendars,
        zone: ZoneInfo,
        templates: Templates,
        unreachable: dict[str, int],
    ) -> None:
        self.directory = directory
        self.calendars = calendars
        self.zone = zone
        self.templates = templates
        self.unreachable = unreachable
        self.occurrences = OccurrenceBuilder(calendars, directory, zone)
        self.policy = RecipientPolicy(config, directory, zone)

    def build(
        self,
        occurrence: Occurrence,
        rules: Sequence[RuleConfig] | None,
        *,
        now: datetime,
        digest: bool,
    ) -> tuple[list[NewAlert], list[DigestItem]]:
        """The alerts (and, with a `digest`, digest items) for one occurrence; the first rule naming a
        person wins."""
        rules = list(rules) if rules is not None else self.policy.rules_for(occurrence.kind, occurrence.name)
        if occurrence.kind in DOSSIER_KINDS:
            calendar = self.calendars.for_dossier(occurrence.unit, occurrence.procedure)
        else:
            calendar = self.calendars.default
        rendered: RenderedAlert | None = None
        alerts: list[NewAlert] = []
        items: list[DigestItem] = []
        base = max(occurrence.event_at, now)
        for rule, person, channels in self.recipients(occurrence, rules):
            key = f"{occurrence.key}:{person.id}"
            if rule.digest and occurrence.kind is AlertKind.DUE_SOON and digest:
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
            severity = rule.severity_for(occurrence.kind)
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
                    deliver_by=deliver_by(occurrence.due_at),
                )
            )
        return alerts, items

    def recipients(
        self, occurrence: Occurrence, rules: Sequence[RuleConfig]
    ) -> Iterator[tuple[RuleConfig, PersonConfig, tuple[str, ...]]]:
        """(rule, person, channels) for each person an occurrence reaches; the first rule naming a person
        wins, and people no channel reaches are counted in `unreachable` instead."""
        seen: set[str] = set()
        for rule in rules:
            if occurrence.name is not None and not rule.covers(occurrence.name):
                continue
            for person in self.policy.recipients(rule, occurrence):
                if person.id in seen:
                    continue
                seen.add(person.id)
                channels = self.policy.channels_for(rule, person)
                if not channels:
                    self._unreachable(person.id, occurrence.kind, rule.name)
                    continue
                yield rule, person, channels

    def group_alert(
        self,
        group: OutageGroup,
        rule: RuleConfig | None,
        kind: AlertKind,
        named: Sequence[Member],
        now: datetime,
        *,
        reminder: int = 0,
    ) -> NewAlert | None:
        """One message of `group` naming `named`: a down or recovered message, or the reminder numbered
        `reminder`; None when nobody is left to tell or no channel reaches them."""
        person = self.directory.person(group.person_id)
        if person is None or rule is None:
            # Removed from the directory or the rules by a reload: nobody to tell any more.
            log.info("outage_group_dropped", person_id=group.person_id, rule=group.rule)
            return None
        channels = self.policy.channels_for(rule, person)
        if not channels:
            self._unreachable(person.id, kind, rule.name)
            return None
        reminder_at = now if reminder else None
        rendered = group_text(
            self.templates, self.occurrences, self.zone, group, kind, named, reminder_at=reminder_at
        )
        severity = rule.severity_for(kind)
        event_at = min(member.started_at for member in named)
        if kind is AlertKind.TARGET_RECOVERED:
            event_at = max(member.ended_at or event_at for member in named)
            key = group.up_key()
        elif reminder:
            event_at = now
            key = group.reminder_key(reminder)
        else:
            key = group.down_key()
        return NewAlert(
            dedupe_key=key,
            kind=kind,
            severity=severity,
            person_id=person.id,
            channels=channels,
            text=rendered.text,
            event_at=event_at,
            not_before=self.policy.not_before(rule, severity, max(event_at, now), self.calendars.default),
            template_params=rendered.template_params,
            phone=person.phone,
            zalo_user_id=person.zalo_user_id,
            subject=f"incident:{group.first.incident_id}",
            keep=rendered.keep,
        )

    def _unreachable(self, person_id: str, kind: AlertKind, rule: str) -> None:
        self.unreachable[person_id] = self.unreachable.get(person_id, 0) + 1
        log.warning("alert_unreachable", person_id=person_id, kind=kind.value, rule=rule)
