"""Zalo OAuth v4 access tokens with single-use, rotating refresh tokens, shared by both Zalo channels.

Each refresh returns a new refresh token and kills the old one, so:

* One refresh at a time across every process on the store (the daemon, `tthc-monitor notify-test`,
  replicas): a lease in the store (SQLite) or the advisory lock `zalo-refresh` (PostgreSQL) is taken
  first (store_lease.py), then the stored value is read again; if another process refreshed meanwhile,
  its access token (stored with the refresh token) is adopted and no refresh is made.
* The new refresh token is written to the key-value store before the new access token is handed out.
  When that write fails, the rotated token is kept in memory, the fresh access token is used anyway (it
  is valid; only a restart would lose the refresh token), and the write is retried before anything else
  on the next call. Only a crash before that retry succeeds can still lock the daemon out.
* A refused refresh never throws away an access token that has not expired yet: it keeps serving until
  its expiry while the operator re-authorises.

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
from alerts.channels.store_lease import LeaseBusy, exclusive
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
        # Across processes: held for one OAuth call and the write after it; lapses if we are killed. On
        # PostgreSQL one advisory lock serves every app (refreshes are rare: about one per app per hour).
        self._lease = exclusive(
            kv, f"zalo.refresh.{config.app_id}", lock="zalo-refresh", ttl=timeout + 10, wait=timeout + 15
        )
        # A rotated refresh token whose write failed: the value to write, and its refresh token.
        self._unsaved: str | None = None
        self._unsaved_refresh_token: str | None = None
        self._rejected_refresh_token: str | None = None
        # An access token Zalo called expired: never adopted again from the store.
        self._invalidated: str | None = None
        self._access_token: str | None = None
        self.access_token_expires_at: float | None = None
        self.reauthorization_required = False
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"ZaloTokenManager(app_id={self.app_id!r}, expires_at={self.access_token_expires_at})"

    def _current(self) -> str | None:
        """The access token, unless it is within the refresh margin of its expiry."""
        if self._access_token is None or self.access_token_expires_at is None:
            return None
        if self._clock() >= self.access_token_expires_at - self._margin:
            return None
        return self._access_token

    def _live(self) -> str | None:
        """The access token while it has not expired at all (the last resort when a refresh fails)."""
        if self._access_token is None or self.access_token_expires_at is None:
            return None
        return self._access_token if self._clock() < self.access_token_expires_at else None

    @property
    def unsaved(self) -> bool:
        """A rotated refresh token is known only in memory (its write failed and is retried)."""
        return self._unsaved is not None

    async def access_token(self) -> str:
        """A usable access token, refreshing first if needed. Raises AuthError or TransientError."""
        token = self._current()
        if token is not None and self._unsaved is None:
            return token
        async with self._lock:
            if self._unsaved is not None:
                await self._write_unsaved()
            # Whoever held the lock before us may have refreshed already.
            token = self._current()
            if token is not None:
                return token
            try:
                return await self._refresh_shared()
            except (AuthError, TransientError):
                live = self._live()
                if live is None:
                    raise
                log.warning("zalo_token_refresh_failed_using_live_token", app_id=self.app_id)
                return live

    def invalidate(self, token: str | None = None) -> None:
        """Forget the access token (Zalo said it expired). With `token`, only if it is still the current one,
        so twenty senders that all saw the same expired token cause one refresh, not twenty."""
        if token is None or token == self._access_token:
            self._invalidated = self._access_token
            self._access_token = None
            self.access_token_expires_at = None

    async def _write_unsaved(self) -> None:
        assert self._unsaved is not None
        try:
            await self._kv.set_value(self.kv_key, self._unsaved)
        except Exception as exc:
            log.error("zalo_token_store_failed", app_id=self.app_id, error=type(exc).__name__, retry=True)
            return
        self._unsaved = self._unsaved_refresh_token = None
        log.info("zalo_token_stored", app_id=self.app_id)

    async def _stored(self) -> dict[str, Any]:
        """The stored value when it belongs to the configured token (else {}: start from the config)."""
        raw = await self._kv.get_value(self.kv_key)
        if not raw:
            return {}
        try:
            stored = json.loads(raw)
        except ValueError:
            stored = None
        if not isinstance(stored, dict):
            log.warning("zalo_token_store_unreadable", app_id=self.app_id)
            return {}
        if stored.get("configured_sha256") != self._configured_fingerprint:
            return {}
        # Tokens read back (another process's, or an earlier run's) are scrubbed from logs like new ones.
        register_secrets(
            (str(stored[name]) for name in ("refresh_token", "access_token") if stored.get(name)),
            transient=True,
        )
        return stored

    async def _refresh_shared(self) -> str:
        if self._lease is None:
            return await self._refresh(await self._stored())
        try:
            async with self._lease:
                # Read again under the lease: another process may have refreshed while we waited.
                return await self._refresh(await self._stored())
        except LeaseBusy as exc:
            raise GatewayUnavailable("another process is refreshing the zalo token") from exc

    async def _refresh(self, stored: dict[str, Any]) -> str:
        adopted = self._adopt(stored)
        if adopted is not None:
            return adopted
        refresh_token = (
            self._unsaved_refresh_token
            or (str(stored["refresh_token"]) if stored.get("refresh_token") else None)
            or self._configured_refresh_token.get_secret_value()
        )
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
        access_token = str(reply["access_token"])
        expires_at = self._clock() + _expires_in(reply.get("expires_in"))
        # Tokens issued at run time are secrets like the configured ones: keep them out of every log line.
        register_secrets((new_refresh_token, access_token), transient=True)
        # The old refresh token is dead from here on: remember the new one before anything can fail.
        self._unsaved = self._value(new_refresh_token, access_token, expires_at)
        self._unsaved_refresh_token = new_refresh_token
        await self._write_unsaved()
        self._access_token = access_token
        self.access_token_expires_at = expires_at
        self.reauthorization_required = False
        self._rejected_refresh_token = None
        log.info("zalo_token_refreshed", app_id=self.app_id, expires_at=expires_at, stored=not self.unsaved)
        return access_token

    def _adopt(self, stored: dict[str, Any]) -> str | None:
        """Use the access token another process stored, when it is newer and still good for a while."""
        if self._unsaved is not None:
            return None
        token, expires_at = stored.get("access_token"), stored.get("expires_at")
        if (
            not isinstance(token, str)
            or not isinstance(expires_at, int | float)
            or token == self._invalidated
        ):
            return None
        if self._clock() >= expires_at - self._margin:
            return None
        self._access_token = token
        self.access_token_expires_at = float(expires_at)
        self.reauthorization_required = False
        self._rejected_refresh_token = None
        log.info("zalo_token_adopted", app_id=self.app_id, expires_at=expires_at)
        return token

    def _reject(self, refresh_token: str, reply: dict[str, Any]) -> None:
        # The access token in hand (if any) stays: it is valid until it expires.
        self.reauthorization_required = True
        self._rejected_refresh_token = refresh_token
        if refresh_token == self._unsaved_refresh_token:
            self._unsaved = self._unsaved_refresh_token = None
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

    def _value(self, refresh_token: str, access_token: str, expires_at: float) -> str:
        # The access token is stored too, so another process sharing the store uses it instead of
        # spending the single-use refresh token again. Same secrecy as the refresh token beside it.
        return json.dumps(
            {
                "refresh_token": refresh_token,
                "configured_sha256": self._configured_fingerprint,
                "rotated_at": self._clock(),
                "access_token": access_token,
                "expires_at": expires_at,
            }
        )


def _expires_in(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return _FALLBACK_EXPIRES_IN
    return seconds if seconds > 0 else _FALLBACK_EXPIRES_IN
