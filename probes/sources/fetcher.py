"""One HTTP source's requests: session, credentials, retries, redirects, and what a reply must be.

Each page request is retried a few times (tenacity, exponential backoff with jitter) before the whole
fetch fails. Redirects are followed here, origin by origin, so no credential crosses one; a `login`
token is renewed once per request that answers 401. An HTML page, an empty body or a body that is not
JSON is a failure, never an empty listing. Paging over a listing is `paging.read_pages`, which
asks an `HttpFetcher` for one page at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from yarl import URL

from monitor.dossiers.model import SyncError, SyncFailure
from monitor.logging import register_secrets
from monitor.placeholders import fill_placeholders

from .auth import ApiKeyAuth, BasicAuth, BearerAuth, LoginAuth, NoAuth, static_auth_headers
from .base import HttpSourceConfigBase
from .paths import Path, get_path, split_path
from .replies import DEFAULT_MAX_REPLY_BYTES, decode_paths, loggable_url, origin_of, read_capped

__all__ = ["HttpFetcher"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5


class _Retryable(SyncError):
    """A page failure worth another attempt (timeouts, 5xx, connection errors, garbled bodies)."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable)


class HttpFetcher:
    """One source's HTTP side: a lazily created session, auth, retries, and paging over a listing.

    `session` may be injected (tests, a shared connector); an injected session is not closed here.
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: timedelta,
        attempts: int,
        retry_wait: timedelta,
        auth: NoAuth | BasicAuth | BearerAuth | ApiKeyAuth | LoginAuth | None = None,
        headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.max_reply_bytes = max_reply_bytes
        self.allowed_origins = frozenset(allowed_origins)
        self._timeout = aiohttp.ClientTimeout(total=timeout.total_seconds())
        self._attempts = attempts
        self._retry_wait = retry_wait.total_seconds()
        self._auth = auth or NoAuth()
        self._headers = dict(headers or {})
        self._session = session
        self._owns_session = session is None
        self._token: str | None = None

        self._login_lock = asyncio.Lock()
        self.requests = 0
        self.logins = 0

    @classmethod
    def for_source(
        cls,
        config: HttpSourceConfigBase,
        *,
        auth: NoAuth | BasicAuth | BearerAuth | ApiKeyAuth | LoginAuth | None = None,
        headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> HttpFetcher:
        """A fetcher with the source's own timeout and retry settings."""
        return cls(
            config.name,
            timeout=config.timeout,
            attempts=config.attempts,
            retry_wait=config.retry_wait,
            auth=auth,
            headers=headers,
            session=session,
            max_reply_bytes=int(config.max_reply_bytes),
            allowed_origins=config.allowed_origins,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- auth --

    async def _login(self, stale: str | None) -> str:
        auth = self._auth
        assert isinstance(auth, LoginAuth)
        async with self._login_lock:
            # Another page may have renewed the token while this one waited.
            if self._token is not None and self._token != stale:
                return self._token
            # One pass: a password containing "{username}" is sent as it is.
            credentials = {"username": auth.username, "password": auth.password.get_secret_value()}
            kwargs: dict[str, Any] = {}
            if auth.body is not None:
                kwargs["json"] = fill_placeholders(auth.body, credentials)
            elif auth.form is not None:
                kwargs["data"] = fill_placeholders(auth.form, credentials)
            self.logins += 1
            try:
                async with self.session.request(auth.method, auth.url, **kwargs) as response:
                    body = await read_capped(
                        response, self.max_reply_bytes, self.name, loggable_url(auth.url)
                    )
                    status = response.status
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise _Retryable(SyncFailure.TIMEOUT, f"{self.name}: login timed out") from exc
            except aiohttp.ClientError as exc:
                raise _Retryable(SyncFailure.ERROR, f"{self.name}: login failed: {_brief(exc)}") from exc
            if status != 200:
                raise SyncError(SyncFailure.AUTH, f"{self.name}: login answered HTTP {status}")
            try:
                document = json.loads(body)
            except ValueError:
                raise SyncError(SyncFailure.AUTH, f"{self.name}: login reply is not JSON") from None
            token = get_path(document, split_path(auth.token_path))
            if not isinstance(token, str) or not token:
                raise SyncError(
                    SyncFailure.AUTH, f"{self.name}: login reply has no token at {auth.token_path}"
                )
            # A token issued at run time is a secret like the configured ones: never in a log line.
            register_secrets((token,), transient=True)
            self._token = token
            return token

    async def _auth_headers(self) -> dict[str, str]:
        if isinstance(self._auth, LoginAuth):
            token = self._token or await self._login(None)
            prefix = self._auth.prefix
            return {self._auth.header: f"{prefix} {token}" if prefix else token}
        return static_auth_headers(self._auth)

    # -- one request --

    async def get_values(
        self,
        url: str,
        paths: Mapping[str, Path],
        *,
        home: str,
        params: Mapping[str, str] | None = None,
        method: str = "GET",
        body: Any = None,
    ) -> dict[str, Any]:
        """The values at `paths` of one JSON page (MISSING where absent), retried; SyncError once attempts
        are spent. Credentials go only to the origin `home` (the listing's own)."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            # Exponential with jitter, spelled so it works on tenacity 8.2 through 9.x.
            wait=wait_exponential(multiplier=self._retry_wait, max=self._retry_wait * 8)
            + wait_random(0, self._retry_wait),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    payload, final_url = await self._request_once(url, params, method, body, home)
                    return await self._decode(payload, final_url, paths)
        except _Retryable as exc:
            # Strip the internal subclass: callers and tests see a plain SyncError.
            raise SyncError(exc.reason, str(exc)) from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    def check_origin(self, url: str, home: str, what: str) -> None:
        """SyncError unless `url` is on the listing's origin or an allowed one."""
        origin = origin_of(url)
        if origin != home and origin not in self.allowed_origins:
            raise SyncError(
                SyncFailure.PARSE,
                f"{self.name}: {what} leads to another origin ({origin or url[:80]}); not followed"
                " (list it in allowed_origins to follow it; credentials are never sent there)",
            )

    async def _request_once(
        self, url: str, params: Mapping[str, str] | None, method: str, body: Any, home: str
    ) -> tuple[bytes | bytearray, str]:
        renewed = False
        hops = 0
        while True:
            headers = {"Accept": "application/json"}
            if origin_of(url) == home:
                # Configured headers may carry keys too (a vendor's X-Token): home origin only.
                headers.update({**self._headers, **await self._auth_headers()})
            self.requests += 1
            try:
                async with self.session.request(
                    method,
                    url,
                    params=params,
                    headers=headers,
                    json=body,
                    timeout=self._timeout,
                    # Redirects are followed here, origin by origin, so no credential crosses one.
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    content_type = response.content_type
                    location = response.headers.get("Location")
                    payload: bytes | bytearray
                    if status in _REDIRECTS and location:
                        payload = b""
                    else:
                        payload = await read_capped(
                            response, self.max_reply_bytes, self.name, loggable_url(url)
                        )
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise _Retryable(SyncFailure.TIMEOUT, f"{self.name}: {loggable_url(url)} timed out") from exc
            except aiohttp.ClientError as exc:
                raise _Retryable(
                    SyncFailure.ERROR, f"{self.name}: {loggable_url(url)}: {_brief(exc)}"
                ) from exc
            if status in _REDIRECTS and location:
                hops += 1
                if hops > _MAX_REDIRECTS:
                    raise SyncError(SyncFailure.STATUS, f"{self.name}: more than {_MAX_REDIRECTS} redirects")
                target = str(response.url.join(URL(location)))
                self.check_origin(target, home, f"a redirect from {loggable_url(url)}")
                url, params = target, None
                if status == 303 or (status in (301, 302) and method != "GET"):
                    method, body = "GET", None
                continue
            if status == 401 and isinstance(self._auth, LoginAuth) and not renewed and origin_of(url) == home:
                # The token expired: log in again once for this request.
                renewed = True
                await self._login(self._token)
                continue
            break
        if status in (401, 403):
            raise SyncError(SyncFailure.AUTH, f"{self.name}: {loggable_url(url)} answered HTTP {status}")
        if status >= 500 or status == 429:
            raise _Retryable(SyncFailure.STATUS, f"{self.name}: {loggable_url(url)} answered HTTP {status}")
        if status >= 300:
            raise SyncError(SyncFailure.STATUS, f"{self.name}: {loggable_url(url)} answered HTTP {status}")
        stripped = payload[:64].lstrip()
        # A maintenance or login page served with 200 must not read as an empty listing.
        if content_type == "text/html" or stripped[:1] == b"<":
            raise _Retryable(SyncFailure.HTML, f"{self.name}: {loggable_url(url)} returned an HTML page")
        if not payload.strip():
            raise _Retryable(SyncFailure.NOT_JSON, f"{self.name}: {loggable_url(url)} returned an empty body")
        return payload, url

    async def _decode(
        self, payload: bytes | bytearray, url: str, paths: Mapping[str, Path]
    ) -> dict[str, Any]:
        try:
            return await decode_paths(payload, paths)
        except ValueError as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise _Retryable(
                SyncFailure.NOT_JSON, f"{self.name}: {loggable_url(url)} did not return JSON ({detail})"
            ) from None


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
