"""A signed JSON webhook (chat bots, ticketing, another monitor).

The receiver verifies `X-TTHC-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body with the shared
secret (`verify_signature` does it), and de-duplicates on `X-TTHC-Alert-Id`. The phone number is not sent:
the receiver gets the person's id and the rendered text only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Literal

from pydantic import Field, SecretStr

from alerts.channels.base import BaseChannel, ChannelConfigBase, DeliveryReceipt, OutgoingMessage
from alerts.errors import AuthError, PermanentError
from monitor.configtypes import secret_file_fields

__all__ = [
    "ALERT_ID_HEADER",
    "SIGNATURE_HEADER",
    "WebhookChannel",
    "WebhookConfig",
    "sign_body",
    "verify_signature",
]

SIGNATURE_HEADER = "X-TTHC-Signature"
ALERT_ID_HEADER = "X-TTHC-Alert-Id"


def sign_body(secret: str, body: bytes) -> str:
    """The value of the signature header for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: constant-time comparison of the header with our own signature."""
    return header is not None and hmac.compare_digest(sign_body(secret, body), header)


class WebhookConfig(ChannelConfigBase):
    """`type: webhook`."""

    type: Literal["webhook"]
    url: str
    secret: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    _webhook_secret_files = secret_file_fields("secret")


class WebhookChannel(BaseChannel):
    """POSTs one JSON document per alert; any 2xx is success."""

    type = "webhook"
    config: WebhookConfig

    def payload(self, message: OutgoingMessage) -> bytes:
        document = {
            "alert_id": message.alert_id,
            "kind": message.kind,
            "person_id": message.person_id,
            "text": message.text,
            "params": dict(message.template_params),
            "sent_at": self.clock(),
        }
        return json.dumps(document, ensure_ascii=False, sort_keys=True).encode()

    async def _deliver(self, message: OutgoingMessage) -> DeliveryReceipt:
        body = self.payload(message)
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            ALERT_ID_HEADER: message.alert_id,
        }
        if self.config.secret is not None:
            headers[SIGNATURE_HEADER] = sign_body(self.config.secret.get_secret_value(), body)
        response = await self.transport.request(
            "POST", self.config.url, headers=headers, data=body, timeout=self.timeout
        )
        if response.status in (401, 403):
            raise AuthError(f"webhook refused the signature (http {response.status})", code=response.status)
        self.check_http(response)
        if not 200 <= response.status < 300:
            raise PermanentError(f"webhook refused the alert (http {response.status})", code=response.status)
        return DeliveryReceipt(self.name, response.header("X-Request-Id"), 1, 0)
