"""A generic HTTP SMS gateway, for providers without a dedicated channel.

The request is described in config: `url`, `headers` and `body` may use the placeholders `{phone}`,
`{text}`, `{id}` (alert_id) and `{secret}` (the `secret` field, so keys stay out of the config file);
success is `success.status` plus, optionally, a value at a JSON path of the reply.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator

from alerts.channels.base import (
    NO_KEY_CONCURRENCY,
    BaseChannel,
    DeliveryReceipt,
    OutgoingMessage,
    SmsConfigBase,
    SmsText,
)
from alerts.errors import AuthError, InvalidRecipient, PermanentError
from monitor.configtypes import StrictModel, secret_file_fields
from monitor.placeholders import fill_placeholders

__all__ = ["HttpSmsChannel", "HttpSmsConfig", "HttpSuccess", "json_path_get"]

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_MISSING = object()


def json_path_get(value: Any, path: str) -> Any:
    """`data.items[0].status` in a parsed JSON value, or the `_MISSING` sentinel when a step is absent."""
    for name, index in _PATH_PART.findall(path):
        if index:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
        else:
            if not isinstance(value, dict) or name not in value:
                return _MISSING
            value = value[name]
    return value


class HttpSuccess(StrictModel):
    """When the gateway accepted the message."""

    status: list[int] = Field(default_factory=lambda: [200, 201, 202])
    # e.g. json_path: "code", equals: "00"; both or neither.
    json_path: str | None = None
    equals: str | int | float | bool | None = None

    @model_validator(mode="after")
    def _path_and_value(self) -> HttpSuccess:
        if (self.json_path is None) != (self.equals is None):
            raise ValueError("give json_path and equals together")
        return self


class HttpSmsConfig(SmsConfigBase):
    """`type: sms_http`."""

    # No idempotency key at this gateway: keep what a `kill -9` can repeat small.
    concurrency: int = Field(default=NO_KEY_CONCURRENCY, ge=1, le=256)
    type: Literal["sms_http"]
    method: Literal["POST", "PUT", "GET"] = "POST"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body_format: Literal["json", "form"] = "json"
    body: dict[str, Any] | None = None
    secret: SecretStr | None = None
    # How the gateway wants numbers: 84912345678, 0912345678 or +84912345678.
    phone_format: Literal["84", "0", "+84"] = "84"
    success: HttpSuccess = HttpSuccess()
    # Where the gateway's message id is in the reply, if anywhere.
    message_id_path: str | None = None

    _http_secret_files = secret_file_fields("secret")

    @model_validator(mode="after")
    def _placeholders_present(self) -> HttpSmsConfig:
        template = self.url + repr(self.body) + repr(self.headers)
        for needed in ("{phone}", "{text}"):
            if needed not in template:
                raise ValueError(f"url or body must contain the placeholder {needed}")
        if "{secret}" in template and self.secret is None:
            raise ValueError("the placeholder {secret} is used but secret is not set")
        if self.method == "GET" and self.body is not None:
            raise ValueError("a GET request has no body; put the placeholders in the url")
        return self


class HttpSmsChannel(BaseChannel):
    """Sends the (unaccented, fitted) text with the configured request."""

    type = "sms_http"
    config: HttpSmsConfig

    def _phone(self, phone: str) -> str:
        national = phone[2:]
        return {"84": phone, "0": "0" + national, "+84": "+" + phone}[self.config.phone_format]

    async def _deliver(self, message: OutgoingMessage) -> DeliveryReceipt:
        if not message.phone:
            raise InvalidRecipient(f"person {message.person_id!r} has no phone number")
        sms = SmsText.prepare(message, self.config)
        secret = self.config.secret.get_secret_value() if self.config.secret else ""
        # One pass (fill_placeholders): the text may itself contain "{secret}" and must stay text.
        values = {"phone": self._phone(message.phone), "text": sms.content, "id": message.alert_id}
        values["secret"] = secret
        url = fill_placeholders(self.config.url, values, encode=lambda value: quote(value, safe=""))
        headers = fill_placeholders(self.config.headers, values)
        body = fill_placeholders(self.config.body, values) if self.config.body is not None else None
        kwargs: dict[str, Any] = {}
        if body is not None:
            if self.config.body_format == "json":
                kwargs["json"] = body
            else:
                kwargs["data"] = {key: str(value) for key, value in body.items()}
        response = await self.transport.request(
            self.config.method, url, headers=headers, timeout=self.timeout, **kwargs
        )
        if response.status in (401, 403):
            raise AuthError(
                f"sms gateway refused the credentials (http {response.status})", code=response.status
            )
        self.check_http(response)
        if response.status not in self.config.success.status:
            raise PermanentError(
                f"sms gateway refused the message (http {response.status})", code=response.status
            )
        reply: Any = None
        if self.config.success.json_path or self.config.message_id_path:
            reply = self.reply_json(response)
        if self.config.success.json_path is not None:
            found = json_path_get(reply, self.config.success.json_path)
            expected = self.config.success.equals
            if found is _MISSING or (found != expected and str(found) != str(expected)):
                raise PermanentError("sms gateway reply does not report success")
        message_id = None
        if self.config.message_id_path:
            found = json_path_get(reply, self.config.message_id_path)
            message_id = None if found is _MISSING or found is None else str(found)
        return DeliveryReceipt(self.name, message_id, sms.segments, sms.segments)
