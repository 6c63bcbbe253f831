"""Incidents → outage messages: one per person for targets down together, reminders, one recovered.

An incident joins the group of each person its `target_down` rules name (alerts/grouping.py keeps the
groups in `alert_timers`); a group's down message waits `group_wait` to collect the targets that go
down with it, later ones follow after `group_interval`, a reminder per `repeat` names the targets still
down, and a group all back sends its one recovered message. People told of recoveries but of no outage
(no `target_down` rule) get the one-target recovered message. The Router (alerts/router.py) hands
incidents in and calls `flush` on its tick; the alerts themselves are built by alerts/alert_builder.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime

import structlog

from alerts.alert_builder import AlertBuilder
from alerts.config import AlertsConfig
from alerts.grouping import Member, OutageGroup, OutageGroups
from alerts.model import AlertKind, NewAlert
from alerts.rules import RuleConfig

__all__ = ["OutageRouter"]

log = structlog.get_logger("alerts.router")

Enqueue = Callable[[list[NewAlert]], Awaitable[int]]


class OutageRouter:
    """The outage groups (`groups`) and what they send; `enqueue` stores alerts and returns how many
    were new. Each call takes the `alerts:` section and its builder in force (a reload replaces them)."""

    def __init__(self, groups: OutageGroups, enqueue: Enqueue) -> None:
        self.groups = groups
        self._enqueue = enqueue

    async def opened(
        self,
        member: Member,
        alerts: AlertBuilder,
        config: AlertsConfig,
        now: datetime,
        told: Collection[str] = (),
    ) -> int:
        """Put an incident in the group of each person its rules name; send what is due. `told`: people
        who already got this incident's own down message (see `OutageGroups.join`)."""
        occurrence = alerts.occurrences.target_down(
            member.incident_id, member.target, member.started_at, member.reason, member.detail
        )
        rules = alerts.policy.rules_for(AlertKind.TARGET_DOWN, member.target)
        for rule, person, _channels in alerts.recipients(occurrence, rules):
            await self.groups.join(
                member,
                rule.name,
                person.id,
                wait=rule.group_wait,
                interval=rule.group_interval,
                repeat=rule.repeat,
                told=person.id in told,
            )
        return await self.flush(alerts, config, now)

    async def closed(self, member: Member, alerts: AlertBuilder, config: AlertsConfig, now: datetime) -> int:
        """Mark an incident back in its groups: a group all back sends its one recovered message. People
        told of recoveries but of no outage in a group (no target_down rule) get the one-target message."""
        assert member.ended_at is not None
        await self.groups.end(member.incident_id, member.ended_at)
        added = await self.flush(alerts, config, now)
        occurrence = alerts.occurrences.target_recovered(
            member.incident_id,
            member.target,
            member.started_at,
            member.ended_at,
            (member.ended_at - member.started_at).total_seconds(),
        )
        # A recovery is never a digest item (only due-soon alerts are).
        built, _items = alerts.build(occurrence, None, now=now, digest=False)
        lone = [alert for alert in built if not self.groups.holds(member.incident_id, alert.person_id)]
        if lone:
            added += await self._enqueue(lone)
        return added

    async def flush(self, alerts: AlertBuilder, config: AlertsConfig, now: datetime) -> int:
        """Send the groups' due down messages and reminders, and owed recovered messages; return how many
        were new."""
        added = 0
        rules = {rule.name: rule for rule in config.rules}
        for group in self.groups.due(now):
            rule = rules.get(group.rule)
            if group.message_at <= now:
                named = group.unannounced()
                if named:
                    added += await self._send(alerts, group, rule, AlertKind.TARGET_DOWN, named, now)
                    group = await self.groups.announced(group, named, now)
                else:
                    group = await self.groups.idle(group)
            number = group.owed_reminder(now)
            if number:
                added += await self._send(
                    alerts, group, rule, AlertKind.TARGET_DOWN, group.still_down(), now, reminder=number
                )
                await self.groups.reminded(group, number)
        for group in self.groups.complete():
            rule = rules.get(group.rule)
            if rule is not None and AlertKind.TARGET_RECOVERED in rule.kinds:
                added += await self._send(alerts, group, rule, AlertKind.TARGET_RECOVERED, group.members, now)
            await self.groups.finish(group, now, config.rederive_window)
        return added

    async def _send(
        self,
        alerts: AlertBuilder,
        group: OutageGroup,
        rule: RuleConfig | None,
        kind: AlertKind,
        named: Sequence[Member],
        now: datetime,
        *,
        reminder: int = 0,
    ) -> int:
        """Store one message of `group` naming `named`: a down or recovered message, or the reminder
        numbered `reminder`."""
        alert = alerts.group_alert(group, rule, kind, named, now, reminder=reminder)
        if alert is None:
            return 0
        stored = await self._enqueue([alert])
        log.info(
            "outage_group_routed",
            kind=kind.value,
            subject=alert.subject,
            targets=len(named),
            person_id=alert.person_id,
            new=stored,
        )
        return stored
