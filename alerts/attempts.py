"""What one delivery attempt comes to: sent, the same channel later, the next channel, or failed.

The exception class alone decides (see alerts/errors.py):

    accepted (incl. a gateway duplicate)  → sent
    RateLimited (429)                      → the whole channel pauses for exactly the gateway's
                                             Retry-After (within [0, backoff_max]; the backoff when it
                                             is missing or garbage); not a circuit failure
    TransientError                         → same channel later (exponential backoff with jitter, or the
                                             gateway's retry_after when longer, at most backoff_max);
                                             counts toward the channel's circuit
      ... with a further channel in the plan → that channel at once when the channel is now open or
                                             paused, when the retry would land after the alert's
                                             deliver-by, or after `fallback_after` failures on it
    PermanentError                         → the next channel at once
    AuthError, QuotaExceeded               → the channel is unavailable (its circuit opens for
                                             `unavailable_cooldown`) and the alert moves to the next channel
    no channel left, or older than max_age → failed, with the last error
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from tenacity import RetryCallState, wait_exponential, wait_random

from alerts.channels.base import Channel, DeliveryReceipt
from alerts.circuit import CircuitBreaker, CircuitState
from alerts.config import DeliveryConfig
from alerts.errors import AuthError, ChannelError, PermanentError, QuotaExceeded, RateLimited, TransientError
from alerts.outbox_rows import OutboxChange, OutboxRow, failed_change, reschedule_change
from monitor.durations import format_duration

__all__ = ["AttemptPolicy", "Outcome", "short_error", "unreachable_error"]

log = structlog.get_logger(__name__)

# What a recipient must have for a channel type to reach them.
_NEEDS: Mapping[str, str] = {
    "zalo_oa": "zalo_user_id",
    "zalo_zns": "phone",
    "sms_esms": "phone",
    "sms_speedsms": "phone",
    "sms_http": "phone",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one claimed row came to: the store change, and what metrics/callbacks need."""

    row: OutboxRow
    change: OutboxChange
    result: str  # sent, duplicate, retried, fallback, failed, skipped
    channel: str
    receipt: DeliveryReceipt | None = None
    channel_type: str = ""
    sent_at: datetime | None = None


def short_error(exc: BaseException) -> str:
    return str(exc)[:300] or type(exc).__name__


def unreachable_error(name: str, channel: Channel, row: OutboxRow) -> str | None:
    """Why channel `name` cannot reach the row's recipient (no phone, no Zalo id); None when it can."""
    needed = _NEEDS.get(getattr(channel, "type", ""))
    if needed and not getattr(row, needed):
        return f"{name}: recipient has no {needed.replace('_', ' ')}"
    return None


class AttemptPolicy:
    """Decides the `Outcome` of each claimed row and each failed send (see the module docstring).

    `circuits` are the worker's, by channel name: a failure trips or counts against its channel's circuit.
    """

    def __init__(self, config: DeliveryConfig, circuits: Mapping[str, CircuitBreaker]) -> None:
        self.config = config
        self.circuits = circuits
        # base · 2^(n-1) plus up to one base of jitter, so retries of a burst spread out (tenacity's
        # wait_exponential_jitter minus its `initial` argument, deprecated in tenacity 9).
        base = self.config.backoff_base.total_seconds()
        self._wait = wait_exponential(
            multiplier=base, max=self.config.backoff_max.total_seconds()
        ) + wait_random(0, base)

    def _deadline(self, row: OutboxRow) -> datetime:
        return max(row.created_at, row.not_before) + self.config.max_age

    def _expired_error(self, row: OutboxRow) -> str:
        age = format_duration(self.config.max_age)
        return (
            f"not delivered within {age}: {row.last_error}"
            if row.last_error
            else f"not delivered within {age}"
        )

    def precheck(self, row: OutboxRow, now: datetime, channel: Channel) -> Outcome | None:
        """Decide without sending when the row is too old or the recipient cannot use its channel."""
        name = row.channel or ""
        if now >= self._deadline(row):
            return Outcome(row, failed_change(row.id, self._expired_error(row)), "failed", name)
        error = unreachable_error(name, channel, row)
        if error is not None:
            return self._move_on(row, now, error, "skipped")
        return None

    def no_channel(self, row: OutboxRow, now: datetime) -> Outcome:
        """The row's current channel is not configured here, or its plan has none left."""
        if row.channel is None:
            error = row.last_error or "no channel in the alert's plan"
            return Outcome(row, failed_change(row.id, error), "failed", "")
        return self._move_on(row, now, f"{row.channel}: channel is not configured", "fallback")

    def unavailable(self, row: OutboxRow, now: datetime, circuit: CircuitBreaker) -> Outcome:
        """The row's channel is open or paused and the row has a further channel: it moves on at once."""
        if now >= self._deadline(row):
            return Outcome(row, failed_change(row.id, self._expired_error(row)), "failed", circuit.name)
        at = now.timestamp()
        if circuit.state(at) is CircuitState.OPEN:
            why = f"channel unavailable ({circuit.reason})"
        else:
            why = f"channel paused by the gateway for {circuit.paused_until - at:.3g}s"
        return self._move_on(row, now, f"{circuit.name}: {why}", "fallback")

    def _move_on(self, row: OutboxRow, now: datetime, error: str, result: str) -> Outcome:
        """To the next channel of the plan at once, or failed when there is none."""
        name = row.channel or ""
        if row.next_channel is None:
            return Outcome(row, failed_change(row.id, error), "failed", name)
        return Outcome(row, reschedule_change(row.id, now, error, next_channel=True), result, name)

    def backoff(self, channel_attempts: int) -> float:
        """Seconds before retrying a channel after its n-th failure: exponential with jitter, capped."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, channel_attempts)
        return min(float(self._wait(state)), self.config.backoff_max.total_seconds())

    def bounded(self, retry_after: float | None) -> float | None:
        """A gateway's Retry-After within [0, backoff_max]: a gateway cannot park an alert for a day."""
        if retry_after is None:
            return None
        return min(max(0.0, retry_after), self.config.backoff_max.total_seconds())

    def failure(self, row: OutboxRow, exc: ChannelError, now: datetime, send: int | None = None) -> Outcome:
        """The send numbered `send` (`CircuitBreaker.begin`) raised `exc` at `now`."""
        name = row.channel or ""
        circuit = self.circuits[name]
        at = now.timestamp()
        error = short_error(exc)
        if isinstance(exc, AuthError | QuotaExceeded):
            circuit.trip(at, self.config.unavailable_cooldown.total_seconds(), type(exc).__name__)
            if row.next_channel is not None:
                return self._move_on(row, now, error, "fallback")
            return self._retry(row, now, error, circuit.open_until - at if circuit.open_until else 0.0)
        if isinstance(exc, PermanentError):
            circuit.success()
            return self._move_on(row, now, error, "fallback")
        # Transient (the default for any other ChannelError).
        backoff = self.backoff(row.channel_attempts)
        hint = self.bounded(exc.retry_after if isinstance(exc, TransientError) else None)
        if isinstance(exc, RateLimited):
            # The gateway is up and said when to come back: exactly then (the backoff when it did not say
            # in a usable way), for the whole channel; it is not a failure of the gateway.
            delay = backoff if hint is None else hint
            circuit.pause(at + delay)
        else:
            circuit.failure(at, type(exc).__name__, send)
            delay = max(backoff, hint or 0.0)
        if row.next_channel is not None and (
            row.channel_attempts >= self.config.fallback_after
            or not circuit.available(at)
            or now + timedelta(seconds=delay) > row.deliver_by
        ):
            return self._move_on(row, now, error, "fallback")
        return self._retry(row, now, error, delay)

    def broken(self, row: OutboxRow, now: datetime, error: str) -> Outcome:
        """Deciding the outcome itself failed (a bug): the same channel after the backoff, never stuck."""
        return self._retry(row, now, error, self.backoff(row.channel_attempts))

    def _retry(self, row: OutboxRow, now: datetime, error: str, delay: float) -> Outcome:
        at = now + timedelta(seconds=delay)
        name = row.channel or ""
        if at >= self._deadline(row):
            age = format_duration(self.config.max_age)
            return Outcome(row, failed_change(row.id, f"not delivered within {age}: {error}"), "failed", name)
        log.info("alert_retry", alert=row.id, channel=name, seconds=round(delay, 3), error=error)
        return Outcome(row, reschedule_change(row.id, at, error), "retried", name)
