"""eSMS.vn brandname SMS (SendMultipleMessage_V4_post_json).

`RequestId` = alert_id: eSMS refuses a RequestId it has already accepted that day (code 124), which is
exactly the guarantee a resend after a crash or a timeout needs, so 124 counts as delivered.
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, model_validator

from alerts.channels.base import BaseChannel, DeliveryReceipt, OutgoingMessage, SmsConfigBase, SmsText
from alerts.errors import (
    AuthError,
    ContentRejected,
    InvalidRecipient,
    QuotaExceeded,
    TemplateRejected,
    TransientError,
    mask_phone,
)
from monitor.configtypes import secret_file_fields

__all__ = ["DEFAULT_ESMS_URL", "EsmsChannel", "EsmsConfig"]

DEFAULT_ESMS_URL = "https://rest.esms.vn/MainService.svc/json/SendMultipleMessage_V4_post_json/"

_ACCEPTED = "100"
_DUPLICATE = "124"


class EsmsConfig(SmsConfigBase):
    """`type: sms_esms`."""

    type: Literal["sms_esms"]
    api_key: SecretStr
    secret_key: SecretStr
    brandname: str | None = None
    # "2" = customer-care brandname SMS; "8" = fixed-number SMS (no brandname).
    sms_type: str = "2"
    sandbox: bool = False
    url: str = DEFAULT_ESMS_URL
    # eSMS posts delivery reports here; optional.
    callback_url: str | None = None

    _esms_secret_files = secret_file_fields("api_key", "secret_key")

    @model_validator(mode="after")
    def _brandname_for_type_2(self) -> EsmsConfig:
        if self.sms_type == "2" and not self.brandname:
            raise ValueError("brandname is required for sms_type 2")
        return self


class EsmsChannel(BaseChannel):
    """Sends the (unaccented, fitted) text as one eSMS request per message."""

    type = "sms_esms"
    config: EsmsConfig

    async def _deliver(self, message: OutgoingMessage) -> DeliveryReceipt:
        if not message.phone:
            raise InvalidRecipient(f"person {message.person_id!r} has no phone number")
        sms = SmsText.prepare(message, self.config)
        body: dict[str, str] = {
            "ApiKey": self.config.api_key.get_secret_value(),
            "SecretKey": self.config.secret_key.get_secret_value(),
            "Phone": message.phone,
            "Content": sms.content,
            "SmsType": self.config.sms_type,
            "IsUnicode": "1" if sms.unicode else "0",
            "Sandbox": "1" if self.config.sandbox else "0",
            "RequestId": message.alert_id,
        }
        if self.config.brandname:
            body["Brandname"] = self.config.brandname
        if self.config.callback_url:
            body["CallbackUrl"] = self.config.callback_url
        response = await self.transport.request("POST", self.config.url, json=body, timeout=self.timeout)
        self.check_http(response)
        reply = self.reply_json(response)
        code = str(reply.get("CodeResult", "")).strip()
        sms_id = reply.get("SMSID")
        if code in (_ACCEPTED, _DUPLICATE):
            return DeliveryReceipt(
                self.name,
                None if sms_id in (None, "") else str(sms_id),
                sms.segments,
                sms.segments,
                duplicate=code == _DUPLICATE,
            )
        raise self._error(code, message)

    def _error(self, code: str, message: OutgoingMessage) -> Exception:
        phone = mask_phone(message.phone)
        match code:
            case "99":
                return InvalidRecipient(f"esms: number {phone} is blocked", code=code)
            case "108":
                return InvalidRecipient(f"esms: number {phone} has a bad format", code=code)
            case "101":
                return AuthError("esms: wrong api key or secret key", code=code)
            case "140":
                return AuthError("esms: this ip address is not whitelisted", code=code)
            case "103":
                return QuotaExceeded("esms: account balance used up", code=code)
            case "104":
                return ContentRejected("esms: brandname refused", code=code)
            case "146":
                return TemplateRejected("esms: content does not match a registered template", code=code)
        return TransientError("esms: message not accepted", code=code or None)
