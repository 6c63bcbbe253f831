"""A fake eSMS.vn (SendMultipleMessage_V4_post_json) with the real reply codes.

100 accepted; 99 number blocked; 101 wrong ApiKey/SecretKey; 103 balance; 104 brandname not registered;
108 phone format; 124 RequestId already used today; 140 IP not whitelisted; 146 content does not match a
registered template.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes import FakeServer, run_standalone

__all__ = ["FakeEsms"]

_PHONE = re.compile(r"^(84|0)[35789]\d{8}$")


class FakeEsms(FakeServer):
    """The send endpoint at `url`.

    Switches: `blocked_phones` (99), `balance` (messages left; 103 at 0; None = unlimited), `brandnames`
    (104 for others), `ip_whitelisted` (140 when False), `template_prefixes` (146 unless the content
    starts with one; None = no templates), `down` (HTTP 500), `rate_limited` + `retry_after` (HTTP 429),
    and FakeServer's `delay` and `stalled`.
    """

    PATH = "/MainService.svc/json/SendMultipleMessage_V4_post_json/"

    def __init__(
        self,
        *,
        api_key: str = "fake-esms-api-key",
        secret_key: str = "fake-esms-secret-key",
        brandnames: set[str] | None = None,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.secret_key = secret_key
        self.brandnames = brandnames if brandnames is not None else {"TTHC"}
        self.clock = clock
        self.blocked_phones: set[str] = set()
        self.balance: int | None = None
        self.ip_whitelisted = True
        self.template_prefixes: list[str] | None = None
        self.down = False
        self.rate_limited = False
        self.retry_after = 20
        self.messages: list[dict[str, Any]] = []
        self.duplicates = 0
        # RequestIds seen, per day (the gateway de-duplicates within a day).
        self._request_ids: dict[str, set[str]] = {}

    @property
    def url(self) -> str:
        return self.base_url + self.PATH

    def channel_settings(self, name: str = "sms", **options: Any) -> dict[str, Any]:
        """A `sms_esms` channel's config that reaches this fake under the brandname TTHC, plus `options`
        (timeout, concurrency, ...)."""
        return {
            "name": name,
            "type": "sms_esms",
            "url": self.url,
            "api_key": self.api_key,
            "secret_key": self.secret_key,
            "brandname": "TTHC",
            **options,
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.PATH, self._send)

    def _reply(self, code: str, message: str = "", **extra: Any) -> web.Response:
        return web.json_response({"CodeResult": code, "CountRegenerate": 0, "ErrorMessage": message, **extra})

    async def _send(self, request: web.Request) -> web.Response:
        await self.hold()
        if self.down:
            return web.Response(status=500, text="Internal Server Error")
        if self.rate_limited:
            return web.Response(status=429, headers={"Retry-After": str(self.retry_after)}, text="Too Many")
        body = await request.json()
        if body.get("ApiKey") != self.api_key or body.get("SecretKey") != self.secret_key:
            return self._reply("101", "Login failed: wrong ApiKey or SecretKey")
        if not self.ip_whitelisted:
            return self._reply("140", "IP address is not whitelisted")
        phone = str(body.get("Phone", ""))
        if not _PHONE.match(phone):
            return self._reply("108", "Phone number is invalid")
        if phone in self.blocked_phones:
            return self._reply("99", "Phone number is blocked")
        if str(body.get("SmsType")) == "2" and body.get("Brandname") not in self.brandnames:
            return self._reply("104", "Brandname is not registered")
        content = str(body.get("Content", ""))
        if self.template_prefixes is not None and not any(
            content.startswith(p) for p in self.template_prefixes
        ):
            return self._reply("146", "Content does not match a registered template")
        request_id = str(body.get("RequestId", ""))
        seen = self._request_ids.setdefault(time.strftime("%Y-%m-%d", time.localtime(self.clock())), set())
        if request_id and request_id in seen:
            self.duplicates += 1
            return self._reply("124", "RequestId already exists")
        if self.balance is not None:
            if self.balance <= 0:
                return self._reply("103", "Balance is not enough")
            self.balance -= 1
        if request_id:
            seen.add(request_id)
        sms_id = secrets.token_hex(8)
        self.messages.append(
            {
                "phone": phone,
                "content": content,
                "brandname": body.get("Brandname"),
                "is_unicode": str(body.get("IsUnicode")),
                "sandbox": str(body.get("Sandbox")),
                "request_id": request_id,
                "callback_url": body.get("CallbackUrl"),
                "sms_id": sms_id,
            }
        )
        return self._reply("100", SMSID=sms_id)


if __name__ == "__main__":
    run_standalone(FakeEsms, "fake eSMS gateway")
