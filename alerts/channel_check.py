"""A test alert (`tthc-monitor notify-test`): one alert sent now through given channels, recorded.

Unlike the delivery loop, nothing is retried or scheduled: each channel of the plan is tried once, in
order, until one accepts; the alert is stored in the outbox (claimed, so no worker sends it meanwhile)
with the channel used, or failed with every channel's error.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from alerts.attempts import Outcome, short_error, unreachable_error
from alerts.delivery import DeliveryWorker
from alerts.errors import ChannelError
from alerts.model import AlertKind, NewAlert, Severity
from alerts.outbox import OutboxRow, SentMark
from alerts.sending import outgoing_message

__all__ = ["TEST_TEXT", "send_test_alert"]

TEST_TEXT = "[TTHC] Tin nhan thu nghiem tu tthc-monitor: kenh canh bao hoat dong. Khong can tra loi."


async def send_test_alert(
    worker: DeliveryWorker,
    person_id: str,
    *,
    phone: str | None,
    zalo_user_id: str | None,
    channels: Sequence[str],
    text: str = TEST_TEXT,
) -> OutboxRow:
    """Send one test alert now through `channels` in order (each tried once) with `worker`'s channels,
    recorded in its outbox.

    Returns the stored row: `sent` (with the channel used) or `failed` with the last error.
    """
    outbox = worker.outbox
    now = worker.now()
    alert = NewAlert(
        dedupe_key=f"test:{person_id}:{uuid.uuid4().hex}",
        kind=AlertKind.TEST,
        severity=Severity.INFO,
        person_id=person_id,
        channels=tuple(channels),
        text=text,
        event_at=now,
        not_before=now,
        phone=phone,
        zalo_user_id=zalo_user_id,
        subject="test",
    )
    row = await outbox.enqueue_claimed(alert)
    errors: list[str] = []
    for index, name in enumerate(row.channels):
        if index and outbox.shared:
            # Each channel may take its whole timeout: no replica takes the test alert over meanwhile.
            await outbox.renew([row.id])
        channel = worker.channels.get(name)
        if channel is None:
            errors.append(f"{name}: channel is not configured")
            continue
        unreachable = unreachable_error(name, channel, row)
        if unreachable is not None:
            errors.append(unreachable)
            continue
        try:
            receipt = await channel.send(outgoing_message(row))
        except ChannelError as exc:
            errors.append(short_error(exc))
            if worker.metrics is not None:
                result = "fallback" if index + 1 < len(row.channels) else "failed"
                worker.metrics.alert(row.kind, name, result)
            continue
        sent_at = worker.now()
        await outbox.apply(
            [SentMark(row.id, name, receipt.provider_message_id, receipt.segments, receipt.duplicate)],
            sent_at,
        )
        outcome = Outcome(row, SentMark(row.id, name, None, 0), "sent", name, receipt,
                          getattr(channel, "type", ""), sent_at)  # fmt: skip
        worker.observe(outcome)
        break
    else:
        await outbox.mark_failed(row.id, "; ".join(errors) or "no channel in the alert's plan")
    stored = await outbox.get(row.id)
    assert stored is not None
    return stored
