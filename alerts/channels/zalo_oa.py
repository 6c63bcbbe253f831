"""Zalo Official Account messages: free text to a follower's Zalo user_id (customer-service endpoint)."""

from __future__ import annotations

from typing import Literal

from alerts.channels.base import DeliveryReceipt, OutgoingMessage
from alerts.channels.zalo_base import ZaloChannelBase
from alerts.channels.zalo_token import ZaloAppSettings
from alerts.errors import AuthError, ContentRejected, InvalidRecipient, PermanentError

__all__ = ["DEFAULT_OA_URL", "MAX_OA_TEXT", "ZaloOaChannel", "ZaloOaConfig"]

DEFAULT_OA_URL = "https://openapi.zalo.me/v3.0/oa/message/cs"
# OA text messages are limited to 2000 characters.
MAX_OA_TEXT = 2000

# -213: user is not a follower (*unconfirmed*); -230: no interaction in the last 7 days, which the
# cs endpoint requires (*unconfirmed*).
_INVALID_RECIPIENT = frozenset({-213, -230})
_CONTENT = frozenset({-201, -210})
_APP = frozenset({-101, -102, -103, -104, -105})


class ZaloOaConfig(ZaloAppSettings):
    """`type: zalo_oa`. Use `oa_url: .../message/transaction` for transaction messages."""

    type: Literal["zalo_oa"]
    oa_url: str = DEFAULT_OA_URL


class ZaloOaChannel(ZaloChannelBase):
    """Sends the rendered text to `message.zalo_user_id`."""

    type = "zalo_oa"
    config: ZaloOaConfig

    async def _deliver(self, message: OutgoingMessage) -> DeliveryReceipt:
        if not message.zalo_user_id:
            raise InvalidRecipient(f"person {message.person_id!r} has no zalo user id")
        text = message.text if len(message.text) <= MAX_OA_TEXT else message.text[: MAX_OA_TEXT - 1] + "…"
        body = {"recipient": {"user_id": message.zalo_user_id}, "message": {"text": text}}
        code, reply = await self.call_api(self.config.oa_url, body)
        if code == 0:
            payload = reply.get("data") or {}
            message_id = payload.get("message_id") if isinstance(payload, dict) else None
            return DeliveryReceipt(self.name, None if message_id is None else str(message_id), 1, 0)
        if code in _INVALID_RECIPIENT:
            raise InvalidRecipient(f"person {message.person_id!r} cannot receive oa messages", code=code)
        if code in _CONTENT:
            raise ContentRejected("zalo oa refused the message content", code=code)
        if code in _APP:
            raise AuthError("zalo oa refused the app credentials", code=code)
        raise PermanentError("zalo oa refused the message", code=code)
