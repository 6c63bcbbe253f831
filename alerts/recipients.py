"""Who an alert goes to, on which of their channels, and not before when (quiet and working hours)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.config import AlertsConfig, clock_time
from alerts.directory import Directory, PersonConfig
from alerts.model import AlertKind, NewAlert, Severity
from alerts.occurrences import Occurrence
from alerts.rules import DOSSIER_KINDS, RuleConfig
from monitor.calendar import WorkingCalendar

__all__ = ["RecipientPolicy"]

# Channel types and what they need to reach a person.
_NEEDS_PHONE = frozenset({"zalo_zns", "sms_esms", "sms_speedsms", "sms_http"})
_NEEDS_ZALO_ID = frozenset({"zalo_oa"})


class RecipientPolicy:
    """The rules and the directory applied to an occurrence; quiet hours are local times in `zone`."""

    def __init__(self, config: AlertsConfig, directory: Directory, zone: ZoneInfo) -> None:
        self.config = config
        self.directory = directory
        self.zone = zone
        self._channel_types = {channel.name: channel.type for channel in config.channels}
        self._quiet = (
            (clock_time(config.quiet_hours.start), clock_time(config.quiet_hours.end))
            if config.quiet_hours is not None
            else None
        )

    def rules_for(self, kind: AlertKind, name: str | None = None) -> list[RuleConfig]:
        """The rules `on` this kind that cover `name` (a target or source; None = any), in config order."""
        return [
            rule for rule in self.config.rules if kind in rule.kinds and (name is None or rule.covers(name))
        ]

    def recipients(self, rule: RuleConfig, occurrence: Occurrence) -> list[PersonConfig]:
        """The people a rule names for an occurrence, in the order of its `to`."""
        people: list[PersonConfig] = []
        for recipient in rule.to:
            if recipient == "assignee":
                if occurrence.kind not in DOSSIER_KINDS:
                    continue
                person = self.directory.match_assignee(
                    occurrence.assignee_id, occurrence.assignee_name, occurrence.unit
                )
                found = [person] if person is not None else []
            else:
                unit = occurrence.unit if occurrence.kind in DOSSIER_KINDS else None
                found = self.directory.people_for([recipient], unit)
            people.extend(person for person in found if person not in people)
        return people

    def channels_for(self, rule: RuleConfig, person: PersonConfig) -> tuple[str, ...]:
        """The rule's channels, else the person's, else every channel; only those that can reach them."""
        names = rule.channels or person.channels or list(self._channel_types)
        return tuple(name for name in names if self._reaches(name, person))

    def _reaches(self, channel: str, person: PersonConfig) -> bool:
        kind = self._channel_types.get(channel)
        if kind is None:
            return False
        if kind in _NEEDS_PHONE:
            return person.phone is not None
        if kind in _NEEDS_ZALO_ID:
            return person.zalo_user_id is not None
        return True

    def not_before(
        self, rule: RuleConfig, severity: Severity, base: datetime, calendar: WorkingCalendar
    ) -> datetime:
        """`base` pushed past the quiet hours (unless critical) and to a working moment (if asked)."""
        moment = base
        # Each push may land in the other's closed time (a working day that opens in quiet hours).
        for _ in range(8):
            pushed = moment
            if rule.working_hours_only:
                pushed = calendar.next_working_moment(pushed)
            if rule.quiet_hours and severity is not Severity.CRITICAL:
                pushed = self.quiet_end(pushed) or pushed
            if pushed == moment:
                break
            moment = pushed
        return moment

    def quiet_end(self, moment: datetime) -> datetime | None:
        """When the quiet hours around `moment` end, or None when `moment` is not in quiet hours."""
        if self._quiet is None:
            return None
        start, end = self._quiet
        local = moment.astimezone(self.zone)
        clock = local.time().replace(tzinfo=None)
        day = local.date()
        if start > end:  # spans midnight, e.g. 21:00-06:30
            if clock >= start:
                return datetime.combine(day + timedelta(days=1), end, tzinfo=self.zone)
            if clock < end:
                return datetime.combine(day, end, tzinfo=self.zone)
            return None
        if start <= clock < end:
            return datetime.combine(day, end, tzinfo=self.zone)
        return None

    def schedule_digest(self, alert: NewAlert) -> NewAlert:
        """A digest's not_before past the quiet hours (the digest hour may be configured inside them)."""
        end = self.quiet_end(alert.not_before)
        if end is None:
            return alert
        return replace(alert, not_before=end)
