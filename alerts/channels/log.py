"""A dry-run channel: logs what would be sent, with structlog. For trying routing before real gateways."""

from __future__ import annotations

from typing import Literal

import structlog

from alerts.channels.base import BaseChannel, ChannelConfigBase, DeliveryReceipt, OutgoingMessage
from alerts.text import count_segments, unaccent

__all__ = ["LogChannel", "LogConfig"]

log = structlog.get_logger(__name__)


class LogConfig(ChannelConfigBase):
    """`type: log`. `include_text: false` logs only ids, when texts must not reach the log files."""

    type: Literal["log"]
    level: Literal["debug", "info", "warning"] = "info"
    include_text: bool = True


class LogChannel(BaseChannel):
    """Logs `alert_dry_run` events and never fails; logs whether there is a phone number, not the number."""

    type = "log"
    config: LogConfig

    async def _deliver(self, message: OutgoingMessage) -> DeliveryReceipt:
        fields: dict[str, object] = {
            "channel": self.name,
            "alert_id": message.alert_id,
            "kind": message.kind,
            "person_id": message.person_id,
            "has_phone": message.phone is not None,
            "has_zalo": message.zalo_user_id is not None,
            "sms_segments": count_segments(unaccent(message.text)),
        }
        if self.config.include_text:
            fields["text"] = message.text
        getattr(log, self.config.level)("alert_dry_run", **fields)
        return DeliveryReceipt(self.name, f"log-{message.alert_id}", 1, 0)
