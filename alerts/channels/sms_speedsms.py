"""SpeedSMS.vn (`/index.php/sms/send`), Basic auth `token:x`.

Error codes are from secondary sources (*unconfirmed*): 007 IP locked, 008 account locked, 009 account
not allowed to use the API, 101 bad parameters, 105 invalid phone, 110 encoding not supported, 113
content too long, 300 balance, 500 internal error.
"""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from alerts.channels.base import (
    NO_KEY_CONCURRENCY,
    BaseChannel,
    DeliveryReceipt,
    OutgoingMessage,
    SmsConfigBase,
    SmsText,
)
from alerts.errors import (
    AuthError,
    ContentRejected,
    GatewayUnavailable,
    InvalidRecipient,
    PermanentError,
    QuotaExceeded,
    mask_phone,
)
from monitor.configtypes import secret_file_fields

__all__ = ["DEFAULT_SPEEDSMS_URL", "SpeedSmsChannel", "SpeedSmsConfig"]

DEFAULT_SPEEDSMS_URL = "https://api.speedsms.vn/index.php/sms/send"

_AUTH = frozenset({"007", "008", "009"})
_CONTENT = frozenset({"110", "113"})


class SpeedSmsConfig(SmsConfigBase):
    """`type: sms_speedsms`. sms_type 2 = random number (CSKH), 3 = brandname, 4 = default brandname,
    5 = via the SpeedSMS Android app (*unconfirmed*); 3 and 5 need `sender`."""

    # No idempotency key at this gateway: keep what a `kill -9` can repeat small.
    concurrency: int = Field(default=NO_KEY_CONCURRENCY, ge=1, le=256)
    type: Literal["sms_speedsms"]
    token: SecretStr
    sender: str = ""
    sms_type: int = 2
    url: str = DEFAULT_SPEEDSMS_URL

    _speedsms_secret_files = secret_file_fields("token")

    @model_validator(mode="after")
    def _sender_when_needed(self) -> SpeedSmsConfig:
        if self.sms_type in (3, 5) and not self.sender:
            raise ValueError(f"sender is required for sms_type {self.sms_type}")
        return self


class SpeedSmsChannel(BaseChannel):
    """Sends the (unaccented, fitted) text to one number per request."""

    type = "sms_speedsms"
    config: SpeedSmsConfig

    async def _deliver(self, message: OutgoingMessage) -> DeliveryReceipt:
        if not message.phone:
            raise InvalidRecipient(f"person {message.person_id!r} has no phone number")
        sms = SmsText.prepare(message, self.config)
        credentials = base64.b64encode(f"{self.config.token.get_secret_value()}:x".encode()).decode()
        body = {
            "to": [message.phone],
            "content": sms.content,
            "sms_type": self.config.sms_type,
            "sender": self.config.sender,
        }
        response = await self.transport.request(
            "POST",
            self.config.url,
            headers={"Authorization": f"Basic {credentials}"},
            json=body,
            timeout=self.timeout,
        )
        if response.status in (401, 403):
            raise AuthError("speedsms refused the access token", code=response.status)
        self.check_http(response)
        reply = self.reply_json(response)
        code = str(reply.get("code", "")).strip()
        data = reply.get("data") if isinstance(reply.get("data"), dict) else {}
        if reply.get("status") == "success" and code == "00":
            if data.get("invalidPhone"):
                raise InvalidRecipient(f"speedsms: invalid number {mask_phone(message.phone)}", code="00")
            tran_id = data.get("tranId")
            return DeliveryReceipt(
                self.name, None if tran_id is None else str(tran_id), sms.segments, sms.segments
            )
        if code in _AUTH:
            raise AuthError("speedsms refused the account or ip address", code=code)
        if code == "105":
            raise InvalidRecipient(f"speedsms: invalid number {mask_phone(message.phone)}", code=code)
        if code in _CONTENT:
            raise ContentRejected("speedsms refused the content", code=code)
        if code == "300":
            raise QuotaExceeded("speedsms account balance used up", code=code)
        if code == "500":
            raise GatewayUnavailable("speedsms internal error", code=code)
        raise PermanentError("speedsms refused the message", code=code or None)
