"""Zalo OAuth v4 access tokens with single-use, rotating refresh tokens, shared by both Zalo channels.

Each refresh returns a new refresh token and kills the old one. The new one is therefore written to the
key-value store *before* the new access token is used, and kept in memory so that a failed write is
retried on the next refresh; only a crash between Zalo's reply and the write can still lock the daemon
out (then an operator re-authorises).

Which refresh token to start from: the configured one (env var or file) on first run; afterwards the
rotated one in the store, unless the configured one has changed since (an operator re-authorised). That
is detected with a sha256 fingerprint of the configured token stored in the same value as the rotated
token, so one write updates both.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from pydantic import SecretStr

from alerts.channels.base import ChannelConfigBase, KeyValueStore
from alerts.errors import AuthError, GatewayUnavailable, TransientError
from alerts.transport import Transport
from monitor.configtypes import PositiveDuration, secret_file_fields
from monitor.logging import register_secrets

__all__ = [
    "DEFAULT_OAUTH_URL",
    "TOKEN_EXPIRED_CODES",
    "ZaloAppSettings",
    "ZaloTokenManager",
    "zalo_error_code",
]

log = structlog.get_logger(__name__)

DEFAULT_OAUTH_URL = "https://oauth.zaloapp.com/v4/oa/access_token"
# -216: access token invalid/expired (secondary sources); -124: access token invalid (*unconfirmed*).
TOKEN_EXPIRED_CODES = frozenset({-216, -124})
# Used when a reply omits expires_in; short, so a wrong guess costs one extra refresh, not a failure.
_FALLBACK_EXPIRES_IN = 3600.0


class ZaloAppSettings(ChannelConfigBase):
    """The token settings shared by `zalo_zns` and `zalo_oa` (both configs inherit these fields)."""

    app_id: str
    secret_key: SecretStr
    # The refresh token an operator obtained when authorising the app; only the first one is read from
    # here, later ones are rotated into the store.
    refresh_token: SecretStr
    oauth_url: str = DEFAULT_OAUTH_URL
    # Refresh this long before the access token expires, so no send meets an expired token.
    refresh_margin: PositiveDuration = timedelta(minutes=5)

    _zalo_secret_files = secret_file_fields("secret_key", "refresh_token")


def zalo_error_code(reply: dict[str, Any]) -> int:
    """The `error` field of a Zalo reply as an int (0 when missing); Zalo sends ints, some proxies strings."""
    value = reply.get("error", 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ZaloTokenManager:
    """Hands out a valid access token; refreshes one at a time, ahead of expiry and on `invalidate()`.

    `reauthorization_required` and `access_token_expires_at` (epoch seconds, None when no token) are
    exposed for metrics.
    """

    def __init__(
        self,
        config: ZaloAppSettings,
        transport: Transport,
        kv: KeyValueStore,
        clock: Callable[[], float] = time.time,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.app_id = config.app_id
        self._secret_key = config.secret_key
        self._configured_refresh_token = config.refresh_token
        self._configured_fingerprint = _fingerprint(config.refresh_token.get_secret_value())
        self._oauth_url = config.oauth_url
        self._margin = config.refresh_margin.total_seconds()
        self._transport = transport
        self._kv = kv
        self._clock = clock
        self._timeout = timeout
        self.kv_key = f"zalo.oauth.{config.app_id}"
        self._lock = asyncio.Lock()
        # The newest refresh token this process knows; authoritative over the store once set.
        self._refresh_token: str | None = None
        self._rejected_refresh_token: str | None = None
        self._access_token: str | None = None
        self.access_token_expires_at: float | None = None
        self.reauthorization_required = False
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"ZaloTokenManager(app_id={self.app_id!r}, expires_at={self.access_token_expires_at})"

    def _current(self) -> str | None:
        if self._access_token is None or self.access_token_expires_at is None:
            return None
        if self._clock() >= self.access_token_expires_at - self._margin:
            return None
        return self._access_token

    async def access_token(self) -> str:
        """A usable access token, refreshing first if needed. Raises AuthError or TransientError."""
        token = self._current()
        if token is not None:
            return token
        async with self._lock:
            # Whoever held the lock before us may have refreshed already.
            token = self._current()
            if token is None:
                token = await self._refresh()
            return token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the access token (Zalo said it expired). With `token`, only if it is still the current one,
        so twenty senders that all saw the same expired token cause one refresh, not twenty."""
        if token is None or token == self._access_token:
            self._access_token = None
            self.access_token_expires_at = None

    async def _starting_refresh_token(self) -> str:
        if self._refresh_token is not None:
            return self._refresh_token
        raw = await self._kv.get_value(self.kv_key)
        if raw:
            try:
                stored = json.loads(raw)
                if stored.get("configured_sha256") == self._configured_fingerprint and stored.get(
                    "refresh_token"
                ):
                    return str(stored["refresh_token"])
            except (ValueError, AttributeError):
                log.warning("zalo_token_store_unreadable", app_id=self.app_id)
        return self._configured_refresh_token.get_secret_value()

    async def _refresh(self) -> str:
        refresh_token = await self._starting_refresh_token()
        if self.reauthorization_required and refresh_token == self._rejected_refresh_token:
            # Nothing changed since Zalo refused this token: do not hammer the OAuth endpoint.
            raise AuthError(
                "zalo refresh token was rejected; re-authorise the app", reauthorization_required=True
            )
        response = await self._transport.request(
            "POST",
            self._oauth_url,
            headers={"secret_key": self._secret_key.get_secret_value()},
            data={"refresh_token": refresh_token, "app_id": self.app_id, "grant_type": "refresh_token"},
            timeout=self._timeout,
        )
        if response.status == 429 or response.status >= 500:
            raise GatewayUnavailable(f"zalo oauth http {response.status}", code=response.status)
        try:
            reply = response.json()
        except ValueError as exc:
            raise GatewayUnavailable(f"unreadable zalo oauth reply (http {response.status})") from exc
        if not isinstance(reply, dict) or not reply.get("access_token"):
            self._reject(refresh_token, reply if isinstance(reply, dict) else {})
        self.refreshes += 1
        new_refresh_token = str(reply.get("refresh_token") or refresh_token)
        # Tokens issued at run time are secrets like the configured ones: keep them out of every log line.
        register_secrets((new_refresh_token, str(reply["access_token"])), transient=True)
        # The old refresh token is dead from here on: remember the new one before anything can fail.
        self._refresh_token = new_refresh_token
        await self._persist(new_refresh_token)
        self._access_token = str(reply["access_token"])
        self.access_token_expires_at = self._clock() + _expires_in(reply.get("expires_in"))
        self.reauthorization_required = False
        self._rejected_refresh_token = None
        log.info("zalo_token_refreshed", app_id=self.app_id, expires_at=self.access_token_expires_at)
        return self._access_token

    def _reject(self, refresh_token: str, reply: dict[str, Any]) -> None:
        self.reauthorization_required = True
        self._rejected_refresh_token = refresh_token
        self._refresh_token = None
        self._access_token = None
        self.access_token_expires_at = None
        code = reply.get("error")
        log.error(
            "zalo_reauthorization_required",
            app_id=self.app_id,
            error=code,
            error_name=str(reply.get("error_name", ""))[:80],
        )
        raise AuthError(
            "zalo refused the refresh token; re-authorise the app", code=code, reauthorization_required=True
        )

    async def _persist(self, refresh_token: str) -> None:
        value = json.dumps(
            {
                "refresh_token": refresh_token,
                "configured_sha256": self._configured_fingerprint,
                "rotated_at": self._clock(),
            }
        )
        try:
            await self._kv.set_value(self.kv_key, value)
        except Exception as exc:
            log.error("zalo_token_store_failed", app_id=self.app_id, error=type(exc).__name__)
            raise TransientError("cannot store the rotated zalo refresh token") from exc


def _expires_in(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return _FALLBACK_EXPIRES_IN
    return seconds if seconds > 0 else _FALLBACK_EXPIRES_IN
