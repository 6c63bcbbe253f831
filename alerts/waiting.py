"""Why a pending alert has not gone out yet, and when it will: read from the outbox row alone.

The router sets `not_before` (quiet hours, working hours, the digest hour); the delivery worker sets
`next_attempt_at`, `attempts` and `last_error` (backoff, an open circuit). Nothing else records the
reason, so it is derived here from those fields and the quiet hours of the config, for people asking
"why did the officer not get the message?".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, tzinfo

from alerts.config import QuietHoursConfig
from alerts.model import AlertKind
from alerts.outbox_rows import OutboxRow

__all__ = ["PendingWait", "pending_wait"]

# What the delivery worker writes in last_error when a channel's circuit keeps an alert back.
_CIRCUIT_MARK = "channel unavailable"


@dataclass(frozen=True, slots=True)
class PendingWait:
    """When a pending alert is due and what it waits for (`reason` is a short phrase)."""

    due_at: datetime
    reason: str


def pending_wait(row: OutboxRow, now: datetime, quiet: QuietHoursConfig | None, zone: tzinfo) -> PendingWait:
    """The later of `not_before` and `next_attempt_at`, and why (see the module docstring)."""
    due = max(row.not_before, row.next_attempt_at)
    if due <= now:
        return PendingWait(due, "due: the next delivery pass sends it")
    if row.attempts > 0 and row.next_attempt_at >= row.not_before:
        error = row.last_error or "no error recorded"
        if _CIRCUIT_MARK in error:
            return PendingWait(due, f"circuit open: {error}")
        return PendingWait(due, f"backoff after {row.attempts} failed attempt(s): {error}")
    if row.kind == AlertKind.DIGEST.value:
        return PendingWait(due, "digest hour")
    if quiet is not None:
        hours = f"quiet hours {quiet.start}-{quiet.end}"
        if _local_clock(row.not_before, zone) == _clock(quiet.end):
            return PendingWait(due, hours)
        if _in_quiet_hours(row.created_at, zone, quiet):
            # Quiet hours ended before the office opened: both pushed it.
            return PendingWait(due, f"{hours}, then working hours only")
    return PendingWait(due, "working hours only: waits for the office to open")


def _clock(text: str) -> time:
    hour, minute = (int(part) for part in text.split(":"))
    return time(hour % 24, minute)


def _local_clock(moment: datetime, zone: tzinfo) -> time:
    return moment.astimezone(zone).time().replace(tzinfo=None)


def _in_quiet_hours(moment: datetime, zone: tzinfo, quiet: QuietHoursConfig) -> bool:
    clock, start, end = _local_clock(moment, zone), _clock(quiet.start), _clock(quiet.end)
    return (clock >= start or clock < end) if start > end else start <= clock < end
