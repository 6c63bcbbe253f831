"""Zalo ZNS template messages: to a phone number, no follow needed, only pre-approved templates.

Each alert kind maps to a template and to how its parameters are filled: `params` maps a template
parameter to a field of the message, either a key of `OutgoingMessage.template_params` or one of
`alert_id`, `kind`, `person_id`, `text`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from alerts.channels.base import DeliveryReceipt, OutgoingMessage
from alerts.channels.deps import ChannelDeps
from alerts.channels.zalo_base import ZaloChannelBase
from alerts.channels.zalo_token import ZaloAppSettings
from alerts.errors import (
    AuthError,
    InvalidRecipient,
    PermanentError,
    QuotaExceeded,
    TemplateRejected,
    TransientError,
    mask_phone,
)
from monitor.configtypes import StrictModel

__all__ = ["DEFAULT_ZNS_URL", "ZaloZnsChannel", "ZaloZnsConfig", "ZnsTemplate"]

DEFAULT_ZNS_URL = "https://business.openapi.zalo.me/message/template"

_INVALID_RECIPIENT = frozenset({-108, -114, -118, -119, -139})
_TEMPLATE = frozenset({-109, -111, -112, -113})
_QUOTA = frozenset({-144, -115})
_APP = frozenset({-101, -102, -103, -104, -105})
_OUTSIDE_HOURS = -133
_MESSAGE_FIELDS = ("alert_id", "kind", "person_id", "text")
# Some template tags deliver only 07:00-22:00 local (secondary sources).
_ALLOWED_FROM = 7
_ALLOWED_UNTIL = 22


class ZnsTemplate(StrictModel):
    """A ZNS template: its id and which message field fills each of its parameters."""

    template_id: str
    params: dict[str, str] = Field(default_factory=dict)


class ZaloZnsConfig(ZaloAppSettings):
    """`type: zalo_zns`."""

    type: Literal["zalo_zns"]
    zns_url: str = DEFAULT_ZNS_URL
    # alert kind (due_soon, overdue, target_down, ...) → template.
    templates: dict[str, ZnsTemplate] = Field(default_factory=dict)
    # Where "07:00" is, for -133 (outside allowed hours) retries.
    timezone: str = "Asia/Ho_Chi_Minh"

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value


class ZaloZnsChannel(ZaloChannelBase):
    """Sends `OutgoingMessage`s as ZNS template messages; `tracking_id` = alert_id."""

    type = "zalo_zns"
    config: ZaloZnsConfig

    def __init__(self, config: ZaloZnsConfig, deps: ChannelDeps) -> None:
        super().__init__(config, deps)
        self._zone = ZoneInfo(config.timezone)

    def template_data(self, message: OutgoingMessage) -> tuple[str, dict[str, str]]:
        template = self.config.templates.get(message.kind)
        if template is None:
            raise TemplateRejected(f"no zns template configured for alert kind {message.kind!r}")
        data: dict[str, str] = {}
        for param, source in template.params.items():
            if source in message.template_params:
                data[param] = message.template_params[source]
            elif source in _MESSAGE_FIELDS:
                data[param] = str(getattr(message, source))
            else:
                raise TemplateRejected(f"template parameter {param!r} needs field {source!r}, not in message")
        return template.template_id, data

    async def _deliver(self, message: OutgoingMessage) -> DeliveryReceipt:
        if not message.phone:
            raise InvalidRecipient("no phone number for zns")
        template_id, data = self.template_data(message)
        body = {
            "phone": message.phone,
            "template_id": template_id,
            "template_data": data,
            "tracking_id": message.alert_id,
        }
        code, reply = await self.call_api(self.config.zns_url, body)
        if code == 0:
            payload = reply.get("data") or {}
            msg_id = payload.get("msg_id") if isinstance(payload, dict) else None
            return DeliveryReceipt(self.name, None if msg_id is None else str(msg_id), 1, 1)
        raise self._error(code, message)

    def _error(self, code: int, message: OutgoingMessage) -> Exception:
        if code in _INVALID_RECIPIENT:
            return InvalidRecipient(f"zns refused recipient {mask_phone(message.phone)}", code=code)
        if code in _TEMPLATE:
            return TemplateRejected("zns refused the template or its data", code=code)
        if code in _QUOTA:
            return QuotaExceeded("zns daily quota used up", code=code)
        if code in _APP:
            return AuthError("zns refused the app credentials", code=code)
        if code == _OUTSIDE_HOURS:
            return TransientError(
                "zns template outside allowed hours", code=code, retry_after=self.seconds_until_allowed()
            )
        return PermanentError("zns refused the message", code=code)

    def seconds_until_allowed(self) -> float:
        """Seconds until the next 07:00 local; a few minutes if Zalo refuses inside 07:00-22:00."""
        now = datetime.fromtimestamp(self.clock(), self._zone)
        if _ALLOWED_FROM <= now.hour < _ALLOWED_UNTIL:
            return 300.0
        opening = now.replace(hour=_ALLOWED_FROM, minute=0, second=0, microsecond=0)
        if opening <= now:
            opening += timedelta(days=1)
        # Wall-clock arithmetic is safe: Vietnam has no daylight saving time.
        return (opening - now).total_seconds()
