"""The outbox's rows and the changes a delivery round makes to them: values and their SQL parameters, no I/O.

`alerts/outbox.py` reads and writes them; `OutboxRow.public()` (what the API and CLI show) and `repr` leave
out phone numbers, Zalo ids and the text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.model import AlertStatus

__all__ = [
    "OutboxChange",
    "OutboxRow",
    "PreparedChanges",
    "SentMark",
    "alert_id_for",
    "error_text",
    "failed_change",
    "from_ms",
    "prepare_changes",
    "reschedule_change",
    "row_from_values",
    "to_ms",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Errors come from gateways: keep a bounded amount in the row and in API output.
_MAX_ERROR = 300


def to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone aware")
    return (value - _EPOCH) // _MS


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(milliseconds=value)


def alert_id_for(dedupe_key: str) -> str:
    """The idempotency key sent to gateways: stable for a dedupe_key, short enough for eSMS (≤ 50)."""
    return "a" + hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]


def error_text(error: str | None) -> str | None:
    return None if error is None else error[:_MAX_ERROR]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored alert. `channel` is the current channel of the plan (None once it is used up)."""

    id: int
    dedupe_key: str
    kind: str
    severity: str
    person_id: str
    channels: tuple[str, ...]
    channel_index: int
    channel: str | None
    text: str
    template_params: Mapping[str, str]
    phone: str | None
    zalo_user_id: str | None
    subject: str
    keep: tuple[str, ...]
    status: AlertStatus
    attempts: int
    channel_attempts: int
    next_attempt_at: datetime
    created_at: datetime
    event_at: datetime
    not_before: datetime
    sent_at: datetime | None
    channel_used: str | None
    provider_message_id: str | None
    segments: int | None
    last_error: str | None
    duplicate_hint: bool
    # Later than this the alert is late; not_before when the alert had none (deliver at once).
    deliver_by: datetime

    @property
    def alert_id(self) -> str:
        return alert_id_for(self.dedupe_key)

    @property
    def next_channel(self) -> str | None:
        """The channel after the current one in the plan, if any."""
        index = self.channel_index + 1
        return self.channels[index] if index < len(self.channels) else None

    def public(self) -> dict[str, Any]:
        """What the API and CLI may show: no phone, no Zalo id, no text (personal data)."""
        return {
            "id": self.id,
            "alert_id": self.alert_id,
            "kind": self.kind,
            "severity": self.severity,
            "person_id": self.person_id,
            "subject": self.subject,
            "status": self.status.value,
            "channel": self.channel_used or self.channel,
            "channels": list(self.channels),
            "attempts": self.attempts,
            "created_at": self.created_at,
            "event_at": self.event_at,
            "not_before": self.not_before,
            "next_attempt_at": self.next_attempt_at if self.status is AlertStatus.PENDING else None,
            "sent_at": self.sent_at,
            "last_error": self.last_error,
            "duplicate": self.duplicate_hint,
        }

    def __repr__(self) -> str:
        return (
            f"OutboxRow(id={self.id}, kind={self.kind!r}, person_id={self.person_id!r},"
            f" status={self.status.value!r}, channel={self.channel!r}, attempts={self.attempts})"
        )


def row_from_values(values: Sequence[Any]) -> OutboxRow:
    (
        row_id, dedupe_key, kind, severity, person_id, channels, channel_index, channel, text, params,
        phone, zalo_user_id, subject, keep, status, attempts, channel_attempts, next_attempt_at,
        created_at, event_at, not_before, sent_at, channel_used, provider_message_id, segments,
        last_error, duplicate_hint, deliver_by,
    ) = values  # fmt: skip
    return OutboxRow(
        id=row_id,
        dedupe_key=dedupe_key,
        kind=kind,
        severity=severity,
        person_id=person_id,
        channels=tuple(json.loads(channels)),
        channel_index=channel_index,
        channel=channel,
        text=text,
        template_params=json.loads(params),
        phone=phone,
        zalo_user_id=zalo_user_id,
        subject=subject,
        keep=tuple(json.loads(keep)),
        status=AlertStatus(status),
        attempts=attempts,
        channel_attempts=channel_attempts,
        next_attempt_at=from_ms(next_attempt_at),  # type: ignore[arg-type]
        created_at=from_ms(created_at),  # type: ignore[arg-type]
        event_at=from_ms(event_at),  # type: ignore[arg-type]
        not_before=from_ms(not_before),  # type: ignore[arg-type]
        sent_at=from_ms(sent_at),
        channel_used=channel_used,
        provider_message_id=provider_message_id,
        segments=segments,
        last_error=last_error,
        duplicate_hint=bool(duplicate_hint),
        deliver_by=from_ms(not_before if deliver_by is None else deliver_by),  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True)
class SentMark:
    """A gateway accepted row `id`: what `mark_sent_many` records."""

    id: int
    channel: str
    provider_message_id: str | None
    segments: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class _Reschedule:
    id: int
    at: int
    error: str | None
    next_channel: bool


@dataclass(frozen=True, slots=True)
class _Fail:
    id: int
    error: str | None


OutboxChange = SentMark | _Reschedule | _Fail


def reschedule_change(row_id: int, at: datetime, error: str, next_channel: bool = False) -> OutboxChange:
    """A pending `reschedule` for `Outbox.apply`."""
    return _Reschedule(row_id, to_ms(at), error_text(error), next_channel)


def failed_change(row_id: int, error: str) -> OutboxChange:
    """A pending `mark_failed` for `Outbox.apply`."""
    return _Fail(row_id, error_text(error))


PreparedChanges = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


def prepare_changes(changes: Iterable[OutboxChange], sent_at: int) -> PreparedChanges:
    """The parameters of `_apply`'s three statements: sent, rescheduled, failed."""
    sent: list[tuple[Any, ...]] = []
    moved: list[tuple[Any, ...]] = []
    failed: list[tuple[Any, ...]] = []
    for change in changes:
        if isinstance(change, SentMark):
            sent.append(
                (sent_at, change.channel, change.provider_message_id, change.segments,
                 int(change.duplicate), change.id)
            )  # fmt: skip
        elif isinstance(change, _Reschedule):
            moved.append((change.at, change.error, int(change.next_channel), change.id))
        else:
            failed.append((change.error, change.id))
    return sent, moved, failed
