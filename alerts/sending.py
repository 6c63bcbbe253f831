"""One claimed outbox row through its channel: the send, and what it came to as an `Outcome`.

The channel is told the alert (`outgoing_message`); its reply or error is turned into an outcome by the
attempt policy (alerts/attempts.py). A send never raises: a channel breaking its contract counts as a
transient failure, and a bug deciding the outcome fails the row, so no row stays in_flight with its
channel's slot held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import structlog

from alerts.attempts import AttemptPolicy, Outcome
from alerts.channels.base import Channel, OutgoingMessage
from alerts.circuit import CircuitBreaker
from alerts.errors import ChannelError, TransientError
from alerts.outbox import OutboxRow, SentMark

__all__ = ["RowSender", "outgoing_message"]

# The delivery worker's events: this is its sending half.
log = structlog.get_logger("alerts.delivery")


class RowSender:
    """Sends claimed rows through `channels`; a success closes the channel's circuit."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        circuits: Mapping[str, CircuitBreaker],
        attempts: AttemptPolicy,
        now: Callable[[], datetime],
    ) -> None:
        self.channels = channels
        self.circuits = circuits
        self.attempts = attempts
        self.now = now

    async def send(self, row: OutboxRow, number: int) -> Outcome:
        """Send one claimed row (send `number` of its channel's circuit); always returns an outcome."""
        name = row.channel or ""
        try:
            return await self._attempt(row, number)
        except Exception as exc:
            # Deciding what the attempt came to failed: the row must not stay in_flight with its slot held.
            log.exception("alert_delivery_bug", channel=name, alert=row.id)
            return self.attempts.broken(row, self.now(), f"{name}: unexpected {type(exc).__name__}")

    async def _attempt(self, row: OutboxRow, number: int) -> Outcome:
        name = row.channel or ""
        channel = self.channels[name]
        message = outgoing_message(row)
        try:
            receipt = await channel.send(message)
        except ChannelError as exc:
            return self.attempts.failure(row, exc, self.now(), number)
        except Exception as exc:
            # The channel contract says this cannot happen; never let one bad send stop the worker.
            log.exception("alert_channel_bug", channel=name, alert=row.id)
            error = TransientError(f"unexpected {type(exc).__name__}", channel=name)
            return self.attempts.failure(row, error, self.now(), number)
        self.circuits[name].success()
        now = self.now()
        mark = SentMark(row.id, name, receipt.provider_message_id, receipt.segments, receipt.duplicate)
        result = "duplicate" if receipt.duplicate else "sent"
        log.info("alert_sent", alert=row.id, kind=row.kind, channel=name, duplicate=receipt.duplicate)
        return Outcome(row, mark, result, name, receipt, getattr(channel, "type", ""), now)


def outgoing_message(row: OutboxRow) -> OutgoingMessage:
    """What a channel sends for an outbox row."""
    return OutgoingMessage(
        alert_id=row.alert_id,
        kind=row.kind,
        person_id=row.person_id,
        text=row.text,
        phone=row.phone,
        zalo_user_id=row.zalo_user_id,
        template_params=row.template_params,
        keep=row.keep,
    )
