"""Events → occurrences: what one event (or one timer firing) is about, with the fields its text needs."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerts.directory import Directory
from alerts.model import AlertKind
from alerts.rules import RuleConfig
from alerts.templates import format_elapsed, format_working_left, reason_text
from alerts.timers import Timer, epoch, from_epoch
from monitor.calendar import Calendars
from monitor.events import DossierThresholdCrossed, TargetStateChanged

__all__ = ["Occurrence", "OccurrenceBuilder", "certificate_expiry"]

# How the probes word a certificate's remaining days in `detail`.
_CERT_DAYS = re.compile(r"certificate (expires in|expired) (\d+(?:\.\d+)?) days")


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Something to alert about, before recipients are chosen: one event, or one timer firing."""

    kind: AlertKind
    # Dedupe key prefix; the person id is appended (group reminders add `:r{n}`, see alerts/grouping.py).
    key: str
    subject: str
    event_at: datetime
    fields: Mapping[str, Any]
    # Target or source name, for the rules' `targets` filter.
    name: str | None = None
    unit: str | None = None
    procedure: str | None = None
    assignee_id: str = ""
    assignee_name: str = ""
    keep: tuple[str, ...] = ()
    code: str = ""
    due_at: datetime | None = None


class OccurrenceBuilder:
    """One builder per event kind; dates in the config's `zone`, dossier deadlines in the unit's calendar."""

    def __init__(self, calendars: Calendars, directory: Directory, zone: ZoneInfo) -> None:
        self.calendars = calendars
        self.directory = directory
        self.zone = zone

    def crossing(self, event: DossierThresholdCrossed) -> Occurrence:
        if event.overdue:
            kind = AlertKind.OVERDUE
        elif event.is_last_warning:
            kind = AlertKind.LAST_WARNING
        else:
            kind = AlertKind.DUE_SOON
        calendar = self.calendars.for_dossier(event.unit_code, event.procedure_code or None)
        due = event.due_at.astimezone(self.zone)
        apology_by = calendar.add_working_time(due, days=-1).astimezone(self.zone)
        if event.outage_overlap is None:
            outage = ""
        elif event.outage_overlap:
            ids = ", ".join(f"#{incident}" for incident in event.outage_incident_ids)
            outage = f"Có sự cố hệ thống trước hạn{f' ({ids})' if ids else ''}. "
        else:
            outage = "Không có sự cố hệ thống trước hạn. "
        fields = {
            "code": event.code,
            "procedure": event.procedure_name or event.procedure_code,
            "procedure_code": event.procedure_code,
            "unit": event.unit_name or self.directory.unit_name(event.unit_code),
            "unit_code": event.unit_code,
            "left": format_working_left(event.working_time_left, calendar.day_length),
            "due": due,
            "threshold": event.threshold,
            "apology_by": apology_by,
            # The apology slip is due a working day before the deadline; past that, it is due now.
            "apology": f"trước {apology_by:%H:%M %d/%m}" if apology_by > event.at else "ngay",
            "assignee": event.assignee_name,
            "outage": outage,
            "late": format_working_left(-event.working_time_left, calendar.day_length),
        }
        return Occurrence(
            kind=kind,
            key=f"crossing:{event.crossing_id}",
            subject=f"dossier:{event.code}",
            event_at=event.at,
            fields=fields,
            unit=event.unit_code,
            procedure=event.procedure_code or None,
            assignee_id=event.assignee_id,
            assignee_name=event.assignee_name,
            keep=(event.code, f"{due:%H:%M %d/%m}"),
            code=event.code,
            due_at=event.due_at,
        )

    def target_down(
        self,
        incident_id: int,
        target: str,
        started_at: datetime,
        reason: str | None,
        detail: str,
        *,
        repeat: int = 0,
        now: datetime | None = None,
    ) -> Occurrence:
        """The outage alert, or with `repeat` its n-th reminder at `now` (the key stays the incident's)."""
        elapsed = (now - started_at) if now is not None else timedelta(0)
        return Occurrence(
            kind=AlertKind.TARGET_DOWN,
            key=f"incident:{incident_id}:down",
            subject=f"incident:{incident_id}",
            event_at=now if repeat and now is not None else started_at,
            fields={
                "target": target,
                "reason": reason_text(reason),
                "detail": detail,
                "since": started_at.astimezone(self.zone),
                "incident": incident_id,
                "duration": format_elapsed(elapsed),
                "reminder": f" Nhắc lại: đã {format_elapsed(elapsed)}." if repeat else "",
            },
            name=target,
            keep=(target,),
        )

    def target_recovered(
        self, incident_id: int, target: str, started_at: datetime, ended_at: datetime, duration_seconds: float
    ) -> Occurrence:
        return Occurrence(
            kind=AlertKind.TARGET_RECOVERED,
            key=f"incident:{incident_id}:up",
            subject=f"incident:{incident_id}",
            event_at=ended_at,
            fields={
                "target": target,
                "since": started_at.astimezone(self.zone),
                "until": ended_at.astimezone(self.zone),
                "duration": format_elapsed(duration_seconds),
                "incident": incident_id,
            },
            name=target,
            keep=(target,),
        )

    def cert_expiring(self, target: str, expiry: datetime, at: datetime, detail: str) -> Occurrence:
        expiry_day = expiry.astimezone(self.zone).date()
        days_left = max(0, math.floor((expiry - at).total_seconds() / 86400))
        return Occurrence(
            kind=AlertKind.CERT_EXPIRING,
            key=f"cert:{target}:{expiry_day.isoformat()}",
            subject=f"target:{target}",
            event_at=at,
            fields={"target": target, "days": days_left, "expiry": expiry_day, "detail": detail},
            name=target,
            keep=(target,),
        )

    def timer_fired(self, timer: Timer, rule: RuleConfig) -> Occurrence:
        """A later certificate warning, or DEGRADED / sync failing for longer than the rule's `after`."""
        data = timer.data
        if timer.kind is AlertKind.CERT_EXPIRING:
            return self.cert_expiring(
                timer.name, from_epoch(int(data["expiry"])), timer.fire_at, str(data.get("detail", ""))
            )
        since = timer.since.astimezone(self.zone)
        if timer.kind is AlertKind.TARGET_DEGRADED:
            return Occurrence(
                kind=AlertKind.TARGET_DEGRADED,
                key=f"degraded:{timer.name}:{epoch(timer.since)}",
                subject=f"target:{timer.name}",
                event_at=timer.fire_at,
                fields={
                    "target": timer.name,
                    "reason": reason_text(data.get("reason")),
                    "detail": data.get("detail", ""),
                    "since": since,
                    "duration": format_elapsed(rule.degraded_after),
                },
                name=timer.name,
                keep=(timer.name,),
            )
        return Occurrence(
            kind=AlertKind.SYNC_FAILING,
            key=f"sync:{timer.name}:{epoch(timer.since)}",
            subject=f"source:{timer.name}",
            event_at=timer.fire_at,
            fields={
                "source": timer.name,
                "reason": data.get("reason") or "không rõ",
                "since": since,
                "failures": data.get("failures", 0),
                "duration": format_elapsed(rule.sync_after),
            },
            name=timer.name,
            keep=(timer.name,),
        )


def certificate_expiry(
    event: TargetStateChanged, known: Callable[[str], float | None] | None = None
) -> datetime | None:
    """The expiry of the certificate a cert_expiring event is about: `known(target)` (notAfter, epoch
    seconds) when it gives one, else read from the probe's detail text; None when neither tells."""
    if known is not None and (expiry := known(event.target)) is not None:
        return datetime.fromtimestamp(expiry, UTC)
    match = _CERT_DAYS.search(event.detail)
    if match is None:
        return None
    days = float(match[2]) * (1 if match[1] == "expires in" else -1)
    return event.at + timedelta(days=days)
