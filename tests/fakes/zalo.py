"""A fake Zalo: OAuth v4 with single-use refresh tokens, ZNS template messages and OA messages.

Reply shapes follow the real API (`{"error": 0, "message": "Success", "data": {...}}`); error codes follow
the table in alerts/errors.py. The OAuth error for a used or unknown refresh token is *unconfirmed*
(-14014 "Invalid refresh token").
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web

from tests.fakes import FakeServer, run_standalone

__all__ = ["FakeZalo"]

_PHONE = re.compile(r"^84[35789]\d{8}$")
INVALID_REFRESH_TOKEN = -14014
INVALID_SECRET_KEY = -14002


class FakeZalo(FakeServer):
    """OAuth at `oauth_url`, ZNS at `zns_url`, OA at `oa_url`.

    Switches: `expire_access_tokens()`, `expired_reply` ("error" = -216 in a 200 reply, "http401"),
    `invalid_phones`, `templates` (template_id → required params; None accepts any), `followers`,
    `force_error` (a Zalo error code for every message), `force_status` + `retry_after` (e.g. 500, 429),
    `daily_quota` (-144 once used up), `outside_hours` (-133), `oauth_delay` (seconds), `on_refresh` (awaited
    as each OAuth request arrives, before it is answered: a test looks at what holds then), and FakeServer's
    `delay` and `stalled` for the ZNS and OA sends. A ZNS `tracking_id` already accepted is not sent again:
    the reply is the first one's msg_id and `duplicates` counts such repeats.
    """

    OAUTH_PATH = "/v4/oa/access_token"
    ZNS_PATH = "/message/template"
    OA_PATH = "/v3.0/oa/message/cs"

    def __init__(
        self,
        *,
        app_id: str = "4242424242",
        secret_key: str = "fake-zalo-app-secret",
        access_token_ttl: float = 90000.0,
        expired_reply: Literal["error", "http401"] = "error",
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.app_id = app_id
        self.secret_key = secret_key
        self.access_token_ttl = access_token_ttl
        self.expired_reply = expired_reply
        self.clock = clock
        self.invalid_phones: set[str] = set()
        self.templates: dict[str, set[str]] | None = None
        self.followers: set[str] = set()
        self.force_error: int | None = None
        self.force_status: int | None = None
        self.retry_after: int = 30
        self.daily_quota: int | None = None
        self.outside_hours = False
        self.oauth_delay = 0.0
        self.on_refresh: Callable[[], Awaitable[None]] | None = None
        # State and records.
        self.valid_refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, float] = {}
        self.refreshes = 0
        self.rejected_refreshes = 0
        self.messages: list[dict[str, Any]] = []
        self.duplicates = 0
        self._by_tracking_id: dict[str, str] = {}

    @property
    def oauth_url(self) -> str:
        return self.base_url + self.OAUTH_PATH

    @property
    def zns_url(self) -> str:
        return self.base_url + self.ZNS_PATH

    @property
    def oa_url(self) -> str:
        return self.base_url + self.OA_PATH

    def issue_refresh_token(self) -> str:
        """What an operator gets when authorising the app: a fresh, valid refresh token."""
        token = "rt-" + secrets.token_urlsafe(12)
        self.valid_refresh_tokens.add(token)
        return token

    def channel_settings(self) -> dict[str, str]:
        """What a `zalo_zns` channel's config needs to reach this fake, with a fresh refresh token."""
        return {
            "app_id": self.app_id,
            "secret_key": self.secret_key,
            "refresh_token": self.issue_refresh_token(),
            "oauth_url": self.oauth_url,
            "zns_url": self.zns_url,
        }

    def banner(self) -> str:
        """Printed by the standalone runner: the credentials a daemon under test needs."""
        return f"app_id={self.app_id} secret_key={self.secret_key} refresh_token={self.issue_refresh_token()}"

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now expired."""
        now = self.clock()
        for token in self.access_tokens:
            self.access_tokens[token] = now - 1

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.OAUTH_PATH, self._oauth)
        app.router.add_post(self.ZNS_PATH, self._zns)
        app.router.add_post(self.OA_PATH, self._oa)

    async def _oauth(self, request: web.Request) -> web.Response:
        if self.oauth_delay:
            await asyncio.sleep(self.oauth_delay)
        if self.on_refresh is not None:
            await self.on_refresh()
        form = await request.post()
        if request.headers.get("secret_key") != self.secret_key or form.get("app_id") != self.app_id:
            self.rejected_refreshes += 1
            return web.json_response(
                {
                    "error": INVALID_SECRET_KEY,
                    "error_name": "Invalid secret key",
                    "error_reason": "Invalid app",
                }
            )
        token = str(form.get("refresh_token", ""))
        if form.get("grant_type") != "refresh_token" or token not in self.valid_refresh_tokens:
            self.rejected_refreshes += 1
            return web.json_response(
                {
                    "error": INVALID_REFRESH_TOKEN,
                    "error_name": "Invalid refresh token",
                    "error_reason": "Refresh token is invalid or has been used",
                    "error_description": "Refresh token is invalid",
                }
            )
        # Single use: the old refresh token dies with this reply.
        self.valid_refresh_tokens.discard(token)
        self.refreshes += 1
        access_token = "at-" + secrets.token_urlsafe(12)
        self.access_tokens[access_token] = self.clock() + self.access_token_ttl
        return web.json_response(
            {
                "access_token": access_token,
                "refresh_token": self.issue_refresh_token(),
                # Zalo sends expires_in as a string.
                "expires_in": str(int(self.access_token_ttl)),
            }
        )

    def _error(self, code: int, message: str, status: int = 200) -> web.Response:
        return web.json_response({"error": code, "message": message}, status=status)

    def _check_common(self, request: web.Request) -> web.Response | None:
        if self.force_status is not None:
            headers = {"Retry-After": str(self.retry_after)} if self.force_status == 429 else {}
            return web.json_response(
                {"error": -1, "message": "busy"}, status=self.force_status, headers=headers
            )
        token = request.headers.get("access_token", "")
        expires_at = self.access_tokens.get(token)
        if expires_at is None or expires_at <= self.clock():
            status = 401 if self.expired_reply == "http401" else 200
            return self._error(-216, "Access token is invalid", status)
        if self.force_error is not None:
            return self._error(self.force_error, "forced error")
        if self.outside_hours:
            return self._error(-133, "Template can only be sent from 07:00 to 22:00")
        return None

    async def _zns(self, request: web.Request) -> web.Response:
        await self.hold()
        refused = self._check_common(request)
        if refused is not None:
            return refused
        body = await request.json()
        phone = str(body.get("phone", ""))
        if not _PHONE.match(phone) or phone in self.invalid_phones:
            return self._error(-108, "Phone number is invalid")
        template_id = str(body.get("template_id", ""))
        data = body.get("template_data") or {}
        if self.templates is not None:
            if template_id not in self.templates:
                return self._error(-109, "Template id is invalid")
            if not self.templates[template_id] <= set(data):
                return self._error(-112, "Template data is invalid")
        tracking_id = str(body.get("tracking_id", ""))
        if tracking_id and tracking_id in self._by_tracking_id:
            self.duplicates += 1
            return web.json_response(
                {"error": 0, "message": "Success", "data": {"msg_id": self._by_tracking_id[tracking_id]}}
            )
        if self.daily_quota is not None and self._count("zns") >= self.daily_quota:
            return self._error(-144, "OA has exceeded the daily quota")
        msg_id = secrets.token_hex(8)
        if tracking_id:
            self._by_tracking_id[tracking_id] = msg_id
        self.messages.append(
            {
                "api": "zns",
                "phone": phone,
                "template_id": template_id,
                "template_data": data,
                "tracking_id": tracking_id,
                "access_token": request.headers.get("access_token"),
                "msg_id": msg_id,
            }
        )
        return web.json_response(
            {
                "error": 0,
                "message": "Success",
                "data": {"msg_id": msg_id, "sent_time": str(int(self.clock() * 1000))},
            }
        )

    async def _oa(self, request: web.Request) -> web.Response:
        await self.hold()
        refused = self._check_common(request)
        if refused is not None:
            return refused
        body = await request.json()
        user_id = str((body.get("recipient") or {}).get("user_id", ""))
        text = str((body.get("message") or {}).get("text", ""))
        if user_id not in self.followers:
            return self._error(-213, "User has not followed the OA")
        if not text:
            return self._error(-201, "Parameters are invalid")
        message_id = secrets.token_hex(8)
        self.messages.append(
            {
                "api": "oa",
                "user_id": user_id,
                "text": text,
                "access_token": request.headers.get("access_token"),
                "message_id": message_id,
            }
        )
        return web.json_response(
            {"error": 0, "message": "Success", "data": {"message_id": message_id, "user_id": user_id}}
        )

    def _count(self, api: str) -> int:
        return sum(1 for message in self.messages if message["api"] == api)


if __name__ == "__main__":
    run_standalone(FakeZalo, "fake Zalo OAuth, ZNS and OA endpoints")
