"""What the router hands to the durable outbox: one alert for one person, with its channel plan.

The router (events → alerts) and the outbox/delivery worker (alerts → gateways) meet only here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

__all__ = [
    "DELIVER_BEFORE_DUE",
    "AlertKind",
    "AlertSink",
    "AlertStatus",
    "NewAlert",
    "Severity",
    "deliver_by",
]

# An alert about a due time is late once less than this is left to act on it (call the applicant, sign).
DELIVER_BEFORE_DUE = timedelta(minutes=30)


class AlertKind(StrEnum):
    """What an alert is about: the `kind` label of tthc_alerts_total."""

    DUE_SOON = "due_soon"
    LAST_WARNING = "last_warning"
    OVERDUE = "overdue"
    TARGET_DOWN = "target_down"
    TARGET_RECOVERED = "target_recovered"
    TARGET_DEGRADED = "target_degraded"
    CERT_EXPIRING = "cert_expiring"
    SYNC_FAILING = "sync_failing"
    DIGEST = "digest"
    TEST = "test"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    # Critical alerts ignore quiet hours.
    CRITICAL = "critical"


class AlertStatus(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class NewAlert:
    """One message for one person, ready to be stored before anything is sent.

    `dedupe_key` is unique forever in the outbox (e.g. `crossing:812:person:officer-7`): storing the same
    key twice stores it once, which is what makes re-deriving alerts after a crash safe.
    """

    dedupe_key: str
    kind: AlertKind
    severity: Severity
    person_id: str
    # Channel instance names in fallback order (e.g. ("zalo", "sms")).
    channels: tuple[str, ...]
    text: str
    event_at: datetime
    # Not to be sent before this (end of quiet hours, next working moment); event_at when immediate.
    not_before: datetime
    template_params: Mapping[str, str] = field(default_factory=dict)
    phone: str | None = None
    zalo_user_id: str | None = None
    # What the alert is about, for the API and de-duplication reports: `dossier:<code>`, `incident:<id>`.
    subject: str = ""
    # Strings SMS truncation must keep (dossier code, due time).
    keep: tuple[str, ...] = ()
    # Later than this the alert is late (a dossier's due time less a margin); None = at once (not_before).
    # A channel that cannot deliver by then is given up for the next one of the plan.
    deliver_by: datetime | None = None


def deliver_by(due_at: datetime | None) -> datetime | None:
    """When an alert about something due at `due_at` is late; None (at once) when nothing is due."""
    return None if due_at is None else due_at - DELIVER_BEFORE_DUE


class AlertSink(Protocol):
    """Where the router puts alerts: the durable outbox."""

    async def enqueue(self, alerts: Sequence[NewAlert]) -> int:
        """Store alerts durably (one transaction); return how many were new (not already stored)."""
        ...
