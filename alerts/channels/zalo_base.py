"""What the ZNS and OA channels share: one token manager per app_id, and the Zalo API call made with it."""

from __future__ import annotations

from typing import Any

from alerts.channels.base import BaseChannel
from alerts.channels.deps import ChannelDeps
from alerts.channels.zalo_token import TOKEN_EXPIRED_CODES, ZaloAppSettings, ZaloTokenManager, zalo_error_code
from alerts.errors import AuthError

__all__ = ["ZaloChannelBase"]


class ZaloChannelBase(BaseChannel):
    """Token handling shared by the ZNS and OA channels: one manager per app_id via `ChannelDeps`."""

    config: ZaloAppSettings

    def __init__(self, config: ZaloAppSettings, deps: ChannelDeps) -> None:
        super().__init__(config, deps)
        if deps.kv is None:
            raise ValueError("zalo channels need a key-value store for rotated refresh tokens")
        manager = deps.token_managers.get(config.app_id)
        if manager is None:
            manager = ZaloTokenManager(config, self.transport, deps.kv, deps.clock, timeout=self.timeout)
            deps.token_managers[config.app_id] = manager
        self.tokens = manager

    @property
    def healthy(self) -> bool:
        return not self.tokens.reauthorization_required

    async def call_api(self, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST `body` with the access token; on an expired-token answer refresh and try once more.

        Returns Zalo's error code (0 = success) and the reply; HTTP 429/5xx are raised here.
        """
        for attempt in (1, 2):
            token = await self.tokens.access_token()
            response = await self.transport.request(
                "POST", url, headers={"access_token": token}, json=body, timeout=self.timeout
            )
            code: int | None = 401 if response.status == 401 else None
            reply: dict[str, Any] = {}
            if code is None:
                self.check_http(response)
                reply = self.reply_json(response)
                code = zalo_error_code(reply)
                if code not in TOKEN_EXPIRED_CODES:
                    return code, reply
            self.tokens.invalidate(token)
            if attempt == 2:
                raise AuthError("zalo rejected a freshly refreshed access token", code=code)
        raise AssertionError("unreachable")
