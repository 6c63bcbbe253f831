"""The dossier source contract and the HTTP machinery the API sources share.

A fetch either returns a complete `SyncBatch` or raises `SyncError`: never a partial batch, because the
sync manager would take every dossier missing from a partial listing as gone. Each page request is
retried a few times (tenacity, exponential backoff with jitter) before the whole fetch fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol, runtime_checkable
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import aiohttp
import structlog
from pydantic import ByteSize, Field, SecretStr, field_validator, model_validator
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from yarl import URL

from monitor.configtypes import Duration, PositiveDuration, StrictModel, secret_file_fields
from monitor.dossiers.model import Dossier, SyncBatch, SyncError, SyncFailure
from monitor.logging import register_secrets
from monitor.placeholders import fill_placeholders

from .mapping import BatchBuilder, Path, get_path, quoted_value, split_path
from .replies import DEFAULT_MAX_REPLY_BYTES, MISSING, decode_paths, origin_of, read_capped

__all__ = [
    "ApiKeyAuth",
    "AuthConfig",
    "BasicAuth",
    "BearerAuth",
    "CursorPaging",
    "DossierSource",
    "HttpFetcher",
    "HttpListingConfig",
    "HttpListingSource",
    "HttpSourceConfigBase",
    "LoginAuth",
    "NextLinkPaging",
    "NoAuth",
    "NoPaging",
    "OffsetPaging",
    "Page",
    "PageNumberPaging",
    "PagingConfig",
    "SourceConfigBase",
    "StartEndPaging",
    "format_since",
]

log = structlog.get_logger("tthc.sources")


@runtime_checkable
class DossierSource(Protocol):
    """Where dossiers come from. `fetch(since=None)` is a full listing (`batch.full`)."""

    name: str
    type: str
    supports_incremental: bool

    async def fetch(self, *, since: datetime | None) -> SyncBatch: ...

    async def close(self) -> None: ...


class SourceConfigBase(StrictModel):
    """Settings every dossier source has."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    # Incremental sync (modified since the last one) and full reconcile periods.
    interval: PositiveDuration = timedelta(minutes=2)
    full_interval: PositiveDuration = timedelta(minutes=30)
    # Per request (one page), not for the whole listing.
    timeout: PositiveDuration = timedelta(seconds=30)
    page_size: int = Field(default=500, ge=1, le=10_000)
    timezone: str = "Asia/Ho_Chi_Minh"
    # Attempts per page before the sync fails, and the first backoff delay (doubles, with jitter).
    attempts: int = Field(default=3, ge=1, le=10)
    retry_wait: Duration = timedelta(seconds=0.5)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class HttpSourceConfigBase(SourceConfigBase):
    """Settings every source read over HTTP has: how big a reply may be and where paging may lead."""

    # Largest reply accepted ("32MiB", "500KB" or bytes); a bigger one fails the sync (no retry).
    max_reply_bytes: ByteSize = Field(default=ByteSize(DEFAULT_MAX_REPLY_BYTES), ge=1024)
    # Other origins (https://host[:port]) that next links and redirects may lead to. Credentials are
    # never sent there: only the listing's own origin gets them.
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        origins = []
        for value in values:
            parsed = URL(value) if value.startswith(("http://", "https://")) else None
            bare = parsed is not None and bool(parsed.host) and parsed.path in ("", "/")
            if not bare or parsed is None or parsed.query_string or parsed.fragment or parsed.user:
                raise ValueError(
                    f"{value!r} is not an origin like https://api.example.vn or http://host:8080"
                )
            origins.append(origin_of(parsed))
        return origins


# --- auth -------------------------------------------------------------------------------------------


class NoAuth(StrictModel):
    kind: Literal["none"] = "none"


class BasicAuth(StrictModel):
    kind: Literal["basic"]
    username: str
    password: SecretStr
    _files = secret_file_fields("password")


class BearerAuth(StrictModel):
    kind: Literal["bearer"]
    token: SecretStr
    _files = secret_file_fields("token")


class ApiKeyAuth(StrictModel):
    kind: Literal["api_key"]
    header: str = "X-API-Key"
    key: SecretStr
    _files = secret_file_fields("key")


class LoginAuth(StrictModel):
    """Log in once, reuse the token, log in again when a request answers 401 (once per request).

    `{username}` and `{password}` inside string values of `body` (JSON) or `form` are replaced with
    the credentials, so a vendor's login shape is written as a template.
    """

    kind: Literal["login"]
    url: str
    method: Literal["POST", "GET", "PUT"] = "POST"
    username: str = ""
    password: SecretStr = SecretStr("")
    body: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    token_path: str = "access_token"
    header: str = "Authorization"
    # Joined to the token with one space ("Bearer" -> "Bearer <token>"); "" sends the bare token. Config
    # strings are whitespace-stripped, so the space cannot live in the prefix itself.
    prefix: str = "Bearer"
    _files = secret_file_fields("password")

    @model_validator(mode="after")
    def _one_body(self) -> LoginAuth:
        if self.body is not None and self.form is not None:
            raise ValueError("give either body or form, not both")
        return self


AuthConfig = Annotated[NoAuth | BasicAuth | BearerAuth | ApiKeyAuth | LoginAuth, Field(discriminator="kind")]


# --- paging -----------------------------------------------------------------------------------------


class NoPaging(StrictModel):
    """One request returns everything (small vendor APIs only)."""

    kind: Literal["none"] = "none"


class PageNumberPaging(StrictModel):
    kind: Literal["page"]
    page_param: str = "page"
    size_param: str = "size"
    first_page: Literal[0, 1] = 1


class OffsetPaging(StrictModel):
    kind: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"


class StartEndPaging(StrictModel):
    """Liferay style positions, `end` exclusive. OpenCPS returns everything without `end`."""

    kind: Literal["start_end"]
    start_param: str = "start"
    end_param: str = "end"


class NextLinkPaging(StrictModel):
    kind: Literal["next_link"]
    next_path: str = "next"
    # Sent on the first request only; the next links carry their own.
    size_param: str | None = None


class CursorPaging(StrictModel):
    kind: Literal["cursor"]
    cursor_path: str = "next_cursor"
    cursor_param: str = "cursor"
    size_param: str | None = None


PagingConfig = Annotated[
    NoPaging | PageNumberPaging | OffsetPaging | StartEndPaging | NextLinkPaging | CursorPaging,
    Field(discriminator="kind"),
]


def format_since(value: datetime, pattern: str, zone: ZoneInfo) -> str:
    """A modified-since filter value: `epoch_s`, `epoch_ms`, `iso` or a strftime pattern in local time."""
    if pattern == "epoch_s":
        return str(int(value.timestamp()))
    if pattern == "epoch_ms":
        return str(int(value.timestamp() * 1000))
    local = value.astimezone(zone)
    if pattern == "iso":
        return local.isoformat()
    return local.strftime(pattern)


# --- HTTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One decoded page: its items and the source's own total when it reports one."""

    items: list[Any]
    total: int | None


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

    def _static_auth_headers(self) -> dict[str, str]:
        auth = self._auth
        if isinstance(auth, BasicAuth):
            raw = f"{auth.username}:{auth.password.get_secret_value()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
        if isinstance(auth, BearerAuth):
            return {"Authorization": "Bearer " + auth.token.get_secret_value()}
        if isinstance(auth, ApiKeyAuth):
            return {auth.header: auth.key.get_secret_value()}
        return {}

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
                    body = await read_capped(response, self.max_reply_bytes, self.name, _where(auth.url))
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
        return self._static_auth_headers()

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
                        payload = await read_capped(response, self.max_reply_bytes, self.name, _where(url))
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise _Retryable(SyncFailure.TIMEOUT, f"{self.name}: {_where(url)} timed out") from exc
            except aiohttp.ClientError as exc:
                raise _Retryable(SyncFailure.ERROR, f"{self.name}: {_where(url)}: {_brief(exc)}") from exc
            if status in _REDIRECTS and location:
                hops += 1
                if hops > _MAX_REDIRECTS:
                    raise SyncError(SyncFailure.STATUS, f"{self.name}: more than {_MAX_REDIRECTS} redirects")
                target = str(response.url.join(URL(location)))
                self.check_origin(target, home, f"a redirect from {_where(url)}")
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
            raise SyncError(SyncFailure.AUTH, f"{self.name}: {_where(url)} answered HTTP {status}")
        if status >= 500 or status == 429:
            raise _Retryable(SyncFailure.STATUS, f"{self.name}: {_where(url)} answered HTTP {status}")
        if status >= 300:
            raise SyncError(SyncFailure.STATUS, f"{self.name}: {_where(url)} answered HTTP {status}")
        stripped = payload[:64].lstrip()
        # A maintenance or login page served with 200 must not read as an empty listing.
        if content_type == "text/html" or stripped[:1] == b"<":
            raise _Retryable(SyncFailure.HTML, f"{self.name}: {_where(url)} returned an HTML page")
        if not payload.strip():
            raise _Retryable(SyncFailure.NOT_JSON, f"{self.name}: {_where(url)} returned an empty body")
        return payload, url

    async def _decode(
        self, payload: bytes | bytearray, url: str, paths: Mapping[str, Path]
    ) -> dict[str, Any]:
        try:
            return await decode_paths(payload, paths)
        except ValueError as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise _Retryable(
                SyncFailure.NOT_JSON, f"{self.name}: {_where(url)} did not return JSON ({detail})"
            ) from None

    # -- a whole listing --

    async def pages(
        self,
        url: str,
        *,
        paging: NoPaging | PageNumberPaging | OffsetPaging | StartEndPaging | NextLinkPaging | CursorPaging,
        page_size: int,
        items_path: Path,
        total_path: Path | None,
        params: Mapping[str, str] | None = None,
        method: str = "GET",
        body: Any = None,
        max_pages: int = 100_000,
    ) -> AsyncIterator[Page]:
        """Every page of a listing, in order. Raises SyncError(truncated) when the listing comes up short
        of its own total, SyncError(parse) when a page has no item list."""
        base_params = dict(params or {})
        home = origin_of(url)
        paths: dict[str, Path] = {"items": items_path}
        if total_path:
            paths["total"] = total_path
        if isinstance(paging, NextLinkPaging):
            paths["link"] = split_path(paging.next_path)
        elif isinstance(paging, CursorPaging):
            paths["link"] = split_path(paging.cursor_path)
        # Kinds that always ask for page_size records: a longer page means the server ignored that.
        sized = isinstance(paging, PageNumberPaging | OffsetPaging | StartEndPaging) or bool(
            getattr(paging, "size_param", None)
        )
        seen = 0
        total: int | None = None
        offset = 0
        page_number = paging.first_page if isinstance(paging, PageNumberPaging) else 0
        next_url: str | None = url
        cursor: str | None = None
        visited: set[str] = set()
        for page_index in range(max_pages):
            request_url = url
            query = dict(base_params)
            if isinstance(paging, PageNumberPaging):
                query[paging.page_param] = str(page_number)
                query[paging.size_param] = str(page_size)
            elif isinstance(paging, OffsetPaging):
                query[paging.offset_param] = str(offset)
                query[paging.limit_param] = str(page_size)
            elif isinstance(paging, StartEndPaging):
                query[paging.start_param] = str(offset)
                query[paging.end_param] = str(offset + page_size)
            elif isinstance(paging, NextLinkPaging):
                assert next_url is not None
                request_url = next_url
                if page_index > 0:
                    query = {}  # the link carries its own query
                elif paging.size_param:
                    query[paging.size_param] = str(page_size)
            elif isinstance(paging, CursorPaging):
                if paging.size_param:
                    query[paging.size_param] = str(page_size)
                if cursor is not None:
                    query[paging.cursor_param] = cursor
            values = await self.get_values(
                request_url, paths, home=home, params=query or None, method=method, body=body
            )
            page = _decode_page(values, items_path, self.name, page_index)
            if sized and len(page.items) > page_size:
                raise SyncError(
                    SyncFailure.OVERSIZED,
                    f"{self.name}: page {page_index + 1} has {len(page.items)} records, more than page_size"
                    f" {page_size}: the server ignores the paging parameters",
                )
            link = values.get("link", MISSING)
            if page.total is not None:
                total = page.total
            seen += len(page.items)
            yield page
            count = len(page.items)
            if isinstance(paging, NoPaging):
                break
            if isinstance(paging, NextLinkPaging):
                if not link or not isinstance(link, str) or link is MISSING:
                    break
                next_url = urljoin(request_url, link)
                self.check_origin(next_url, home, f"the next link of page {page_index + 1}")
                if next_url in visited:
                    raise SyncError(
                        SyncFailure.PARSE, f"{self.name}: next link loops back to {_where(next_url)}"
                    )
                visited.add(next_url)
                continue
            if isinstance(paging, CursorPaging):
                value = None if link is MISSING else link
                if value in (None, "") or count == 0:
                    break
                cursor = str(value)
                if cursor in visited:
                    raise SyncError(SyncFailure.PARSE, f"{self.name}: cursor {cursor!r} repeats")
                visited.add(cursor)
                continue
            # Numbered kinds: with a total, page until it is reached (a server that caps the page size
            # below ours still gets read whole); without one, a short page is the last.
            if total is not None:
                if seen >= total or count == 0:
                    break
            elif count < page_size:
                break
            offset += count
            page_number += 1
        else:
            raise SyncError(SyncFailure.PARSE, f"{self.name}: more than {max_pages} pages, giving up")
        if total is not None and seen < total:
            raise SyncError(
                SyncFailure.TRUNCATED, f"{self.name}: listing returned {seen} items but reports {total}"
            )

    async def listing(self, url: str, **kwargs: Any) -> tuple[list[Any], int | None]:
        """Every item of a listing, and the reported total (None when the source reports none)."""
        items: list[Any] = []
        total: int | None = None
        async for page in self.pages(url, **kwargs):
            items.extend(page.items)
            if page.total is not None:
                total = page.total
        return items, total


def _decode_page(values: Mapping[str, Any], items_path: Path, name: str, index: int) -> Page:
    items = values["items"]
    raw_total = values.get("total", MISSING)
    if items in (MISSING, None) and items_path and raw_total in (0, "0"):
        # OpenCPS and others omit the list entirely when nothing matches; only accept that with total 0.
        return Page([], 0)
    if not isinstance(items, list):
        where = ".".join(map(str, items_path)) or "<root>"
        raise SyncError(SyncFailure.PARSE, f"{name}: page {index + 1} has no item list at {where}")
    total: int | None = None
    if raw_total not in (MISSING, None):
        try:
            total = int(raw_total)
        except (TypeError, ValueError):
            raise SyncError(
                SyncFailure.PARSE, f"{name}: page {index + 1} total {quoted_value(raw_total)} is not a number"
            ) from None
    return Page(items, total)


def _where(url: str) -> str:
    """The URL as it may appear in errors, logs and the API: no user:password@, no query string (some
    vendors put API keys there), no fragment."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return url.split("?", 1)[0].rsplit("@", 1)[-1]


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


# --- configured HTTP listings (json_api, dvcqg) -----------------------------------------------------


class HttpListingConfig(HttpSourceConfigBase):
    """A listing over HTTP whose URL, auth, paging and item location come from the config."""

    url: str
    method: Literal["GET", "POST"] = "GET"
    query: dict[str, str] = Field(default_factory=dict)
    # A JSON body for POST listings (some vendors search with POST).
    body: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthConfig = NoAuth()
    # Where the records are in a reply ("" = the reply is the list itself).
    items_path: str = "data"
    total_path: str | None = None
    pagination: PagingConfig = NoPaging()
    # Incremental sync: the query parameter and its value format (strftime, iso, epoch_s, epoch_ms).
    modified_since_param: str | None = None
    modified_since_format: str = "iso"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class HttpListingSource(ABC):
    """Fetches a configured listing page by page and maps each record; subclasses say how to map."""

    config: HttpListingConfig

    def __init__(self, config: HttpListingConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.name = config.name
        self.type: str = getattr(config, "type", "")
        self.supports_incremental = config.modified_since_param is not None
        self._items_path = split_path(config.items_path)
        self._total_path = split_path(config.total_path) if config.total_path else None
        self.http = HttpFetcher.for_source(config, auth=config.auth, headers=config.headers, session=session)

    @abstractmethod
    def map_record(self, record: Any) -> Dossier:
        """One record as a Dossier; raises Rejected (mapping.py) for a record to skip."""

    @abstractmethod
    def code_of(self, record: Any) -> str:
        """The record's dossier code, for messages and duplicate counting ("" when it has none)."""

    async def fetch(self, *, since: datetime | None) -> SyncBatch:
        config = self.config
        params = dict(config.query)
        incremental = since is not None and self.supports_incremental
        if incremental:
            assert since is not None and config.modified_since_param is not None
            params[config.modified_since_param] = format_since(
                since, config.modified_since_format, config.zone
            )
        builder = BatchBuilder(self.name, self.map_record, self.code_of)
        total: int | None = None
        async for page in self.http.pages(
            config.url,
            paging=config.pagination,
            page_size=config.page_size,
            items_path=self._items_path,
            total_path=self._total_path,
            params=params,
            method=config.method,
            body=config.body,
        ):
            await builder.add_all_yielding(page.items)
            if page.total is not None:
                total = page.total
        return builder.build(full=not incremental, total_reported=total)

    async def close(self) -> None:
        await self.http.close()
