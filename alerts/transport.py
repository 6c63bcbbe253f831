"""The HTTP seam of the alert channels, injectable like httpx's MockTransport.

Channels speak only to a `Transport`. Production uses `AiohttpTransport` (one shared
`aiohttp.ClientSession`); unit tests may use `MockTransport(handler)` where the handler sees the exact
bytes a gateway would receive. Network failures are translated here into `GatewayUnavailable` and
`GatewayTimeout`; messages name only the host, never the URL (query strings may carry keys).
"""

from __future__ import annotations

import asyncio
import inspect
import json as jsonlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp

from alerts.errors import GatewayTimeout, GatewayUnavailable

__all__ = [
    "AiohttpTransport",
    "MockTransport",
    "Transport",
    "TransportRequest",
    "TransportResponse",
    "encode_body",
    "host_of",
]


def host_of(url: str) -> str:
    """Host and port of `url` for messages: never its `user:password@`, path or query (they carry keys)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port is not None else host


# Replies are small JSON documents; a larger one is a misbehaving gateway, not a reason to use memory.
MAX_REPLY_BYTES = 1 << 20


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


@dataclass(frozen=True, slots=True)
class TransportRequest:
    """One request as it goes on the wire (body already encoded)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    timeout: float

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def __repr__(self) -> str:
        # Headers and body carry credentials: only say where the request went.
        return f"TransportRequest({self.method} {host_of(self.url)}, {len(self.body)} bytes)"


@dataclass(frozen=True, slots=True)
class TransportResponse:
    """A gateway's reply. `json()` raises ValueError on a body that is not JSON."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @classmethod
    def from_json(
        cls, value: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> TransportResponse:
        merged = {"Content-Type": "application/json", **(headers or {})}
        return cls(status, merged, jsonlib.dumps(value).encode())


@runtime_checkable
class Transport(Protocol):
    """Sends one HTTP request; raises only GatewayUnavailable or GatewayTimeout."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, str] | bytes | str | None = None,
        timeout: float,  # noqa: ASYNC109 - the per-request budget is part of the seam's contract
    ) -> TransportResponse: ...

    async def close(self) -> None: ...


def encode_body(
    headers: Mapping[str, str] | None, json: Any, data: Mapping[str, str] | bytes | str | None
) -> tuple[dict[str, str], bytes]:
    """Headers and bytes for a JSON body, a form (mapping) or raw data, the same for every transport."""
    merged = dict(headers or {})
    if json is not None and data is not None:
        raise ValueError("give json or data, not both")
    if json is not None:
        body = jsonlib.dumps(json, ensure_ascii=False).encode()
        if _header(merged, "Content-Type") is None:
            merged["Content-Type"] = "application/json; charset=utf-8"
    elif isinstance(data, Mapping):
        body = urlencode(dict(data)).encode()
        if _header(merged, "Content-Type") is None:
            merged["Content-Type"] = "application/x-www-form-urlencoded"
    elif isinstance(data, str):
        body = data.encode()
    else:
        body = data or b""
    return merged, body


class AiohttpTransport:
    """The production transport: one lazily created `aiohttp.ClientSession`, closed by `close()`."""

    def __init__(self, *, user_agent: str = "tthc-monitor") -> None:
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": self._user_agent})
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, str] | bytes | str | None = None,
        timeout: float,  # noqa: ASYNC109 - the per-request budget is part of the seam's contract
    ) -> TransportResponse:
        merged, body = encode_body(headers, json, data)
        host = host_of(url)
        session = self._get_session()
        try:
            async with session.request(
                method,
                url,
                headers=merged,
                data=body if body else None,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                payload = await response.content.read(MAX_REPLY_BYTES)
                return TransportResponse(response.status, dict(response.headers), payload)
        except TimeoutError as exc:
            raise GatewayTimeout(f"no reply from {host} within {timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise GatewayUnavailable(f"cannot reach {host}: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


Handler = Callable[[TransportRequest], TransportResponse | Awaitable[TransportResponse]]


class MockTransport:
    """Calls `handler(request)` (sync or async) instead of the network; records every request.

    A handler may raise GatewayUnavailable/GatewayTimeout to simulate network failures, or sleep
    longer than the timeout (enforced here with asyncio.timeout, like the real transport).
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[TransportRequest] = []

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, str] | bytes | str | None = None,
        timeout: float,  # noqa: ASYNC109 - the per-request budget is part of the seam's contract
    ) -> TransportResponse:
        merged, body = encode_body(headers, json, data)
        request = TransportRequest(method.upper(), url, merged, body, timeout)
        self.requests.append(request)
        try:
            async with asyncio.timeout(timeout):
                result = self._handler(request)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError as exc:
            raise GatewayTimeout(f"no reply from {host_of(url)} within {timeout:g}s") from exc
        return result

    async def close(self) -> None:
        return None
