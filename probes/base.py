"""What every prober shares: the `Prober` type and the `ProbeContext` the scheduler creates once."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from monitor.model import FailureReason, ProbeOutcome
from monitor.targets import Target, TlsConfig
from probes.tls import build_ssl_context, cert_expiry_problem, peer_certificates

__all__ = [
    "DEFAULT_BODY_LIMIT",
    "DEFAULT_USER_AGENT",
    "PhaseTimer",
    "ProbeContext",
    "ProbeResponse",
    "Prober",
    "success_outcome",
]

DEFAULT_BODY_LIMIT = 1024 * 1024
DEFAULT_USER_AGENT = "tthc-monitor/0.1"


class ProbeResponse(aiohttp.ClientResponse):
    """A response that keeps the peer's certificates.

    They are read when the response starts: for a small body aiohttp releases (and, with
    force_close, closes) the connection before the caller ever sees the response object.
    """

    peer_certificates: tuple[bytes, ...] = ()

    async def start(self, connection: Any) -> ProbeResponse:
        transport = connection.transport
        if transport is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                self.peer_certificates = peer_certificates(ssl_object)
        await super().start(connection)
        return self


class ProbeContext:
    """Resources shared by all probes: one HTTP session, cached TLS contexts, the clock.

    Create it once and `await close()` it at shutdown. The session is created lazily because
    aiohttp wants a running loop.
    """

    def __init__(
        self,
        *,
        body_limit: int = DEFAULT_BODY_LIMIT,
        user_agent: str = DEFAULT_USER_AGENT,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.body_limit = body_limit
        self.user_agent = user_agent
        # Wall-clock epoch seconds, for certificate expiry; injectable so tests can move time.
        self.wall_clock = wall_clock
        self._session: aiohttp.ClientSession | None = None
        self._ssl_contexts: dict[tuple[bool, Path | None], ssl.SSLContext] = {}
        self._trace_config = _build_trace_config()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session; every request through it opens a fresh connection."""
        if self._session is None or self._session.closed:
            asyncio.get_running_loop()  # fail loudly rather than bind to no loop
            connector = aiohttp.TCPConnector(
                # A fresh connection per probe, as blackbox_exporter does: connect and TLS are measured
                # every time and a pooled keep-alive connection cannot hide a server that went down.
                force_close=True,
                # The scheduler bounds concurrency; a second limit here would only queue probes and
                # count the wait as latency.
                limit=0,
                # Resolve every time: a broken DNS record must show up as a dns failure at once.
                use_dns_cache=False,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                response_class=ProbeResponse,
                trace_configs=[self._trace_config],
                # Probes are independent: no cookie (or session) carried from one probe to the next.
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": self.user_agent},
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=False,
            )
            # aiohttp silently retries an idempotent request once when the server drops a connection;
            # a probe must report that drop, not hide it.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._session = session
        return self._session

    def ssl_context(self, tls: TlsConfig) -> ssl.SSLContext:
        """The context for these TLS settings, built once (loading CA bundles costs milliseconds).

        `server_name` is not part of the key: it is passed per connection. A changed `ca_file` on disk
        is picked up after `clear_tls_cache()` (e.g. on config reload).
        """
        key = (tls.verify, tls.ca_file)
        context = self._ssl_contexts.get(key)
        if context is None:
            context = self._ssl_contexts[key] = build_ssl_context(tls.verify, tls.ca_file)
        return context

    def clear_tls_cache(self) -> None:
        self._ssl_contexts.clear()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ProbeContext:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


Prober = Callable[[Target, ProbeContext], Awaitable[ProbeOutcome]]


def success_outcome(
    context: ProbeContext,
    *,
    elapsed: float,
    max_latency: timedelta | None,
    min_cert_days: int,
    cert_expiry: float | None,
    status_code: int | None = None,
    phases: Mapping[str, float],
) -> ProbeOutcome:
    """The outcome of a probe that passed every check: up, or degraded when slow or the cert expires soon."""
    # An expiring certificate outranks slowness: it needs someone to act before a known date.
    problems: list[tuple[FailureReason, str]] = []
    cert_problem = cert_expiry_problem(cert_expiry, min_cert_days, context.wall_clock())
    if cert_problem is not None:
        problems.append((FailureReason.CERT_EXPIRING, cert_problem))
    if max_latency is not None and elapsed > (limit := max_latency.total_seconds()):
        problems.append((FailureReason.SLOW, f"slow: {elapsed:.2f}s > {limit:g}s"))
    return ProbeOutcome(
        success=True,
        degraded=bool(problems),
        reason=problems[0][0] if problems else None,
        detail="; ".join(detail for _, detail in problems),
        status_code=status_code,
        phases=phases,
        cert_expiry=cert_expiry,
    )


class PhaseTimer:
    """Per-request phase durations in seconds, fed by the TraceConfig callbacks below.

    Summed over redirect hops, like blackbox_exporter. `connect` is TCP only and `tls` the handshake,
    split at the moment asyncio starts the handshake (see probes.tls); without that mark the whole
    connection setup counts as connect.
    """

    __slots__ = (
        "_conn_start",
        "_dns_at_conn_start",
        "_dns_start",
        "_sent_at",
        "_tls_start",
        "connect",
        "dns",
        "headers_at",
        "processing",
        "tls",
        "transfer",
    )

    def __init__(self) -> None:
        self.dns = self.connect = self.tls = self.processing = self.transfer = 0.0
        self._dns_start = self._conn_start = self._dns_at_conn_start = 0.0
        self._tls_start: float | None = None
        self._sent_at: float | None = None
        # When the last response's headers arrived: processing ends, transfer begins.
        self.headers_at: float | None = None

    def handshake_started(self, at: float) -> None:
        self._tls_start = at

    def as_dict(self) -> dict[str, float]:
        return {
            "dns": self.dns,
            "connect": self.connect,
            "tls": self.tls,
            "processing": self.processing,
            "transfer": self.transfer,
        }


def _timer(trace_ctx: SimpleNamespace) -> PhaseTimer | None:
    timer = trace_ctx.trace_request_ctx
    return timer if isinstance(timer, PhaseTimer) else None


async def _on_dns_start(session: object, trace_ctx: SimpleNamespace, params: object) -> None:
    if timer := _timer(trace_ctx):
        timer._dns_start = time.perf_counter()


async def _on_dns_end(session: object, trace_ctx: SimpleNamespace, params: object) -> None:
    if timer := _timer(trace_ctx):
        timer.dns += time.perf_counter() - timer._dns_start


async def _on_connection_start(session: object, trace_ctx: SimpleNamespace, params: object) -> None:
    if timer := _timer(trace_ctx):
        timer._conn_start = time.perf_counter()
        timer._dns_at_conn_start = timer.dns
        timer._tls_start = None


async def _on_connection_end(session: object, trace_ctx: SimpleNamespace, params: object) -> None:
    if timer := _timer(trace_ctx):
        now = time.perf_counter()
        # Name resolution happens inside aiohttp's connection step; it is already counted as dns.
        resolving = timer.dns - timer._dns_at_conn_start
        tls_start = timer._tls_start
        if tls_start is not None and tls_start >= timer._conn_start:
            timer.connect += max(0.0, tls_start - timer._conn_start - resolving)
            timer.tls += now - tls_start
        else:
            timer.connect += max(0.0, now - timer._conn_start - resolving)


async def _on_request_sent(session: object, trace_ctx: SimpleNamespace, params: object) -> None:
    # Headers, then each body chunk: processing starts once the last byte of the request is written.
    if timer := _timer(trace_ctx):
        timer._sent_at = time.perf_counter()


async def _on_response_headers(session: object, trace_ctx: SimpleNamespace, params: object) -> None:
    # Fired for each redirect and for the final response, once its headers are in.
    if timer := _timer(trace_ctx):
        now = time.perf_counter()
        if timer._sent_at is not None:
            timer.processing += now - timer._sent_at
            timer._sent_at = None
        timer.headers_at = now


def _build_trace_config() -> aiohttp.TraceConfig:
    trace_config = aiohttp.TraceConfig(trace_config_ctx_factory=SimpleNamespace)
    trace_config.on_dns_resolvehost_start.append(_on_dns_start)
    trace_config.on_dns_resolvehost_end.append(_on_dns_end)
    trace_config.on_connection_create_start.append(_on_connection_start)
    trace_config.on_connection_create_end.append(_on_connection_end)
    trace_config.on_request_headers_sent.append(_on_request_sent)
    trace_config.on_request_chunk_sent.append(_on_request_sent)
    trace_config.on_request_redirect.append(_on_response_headers)
    trace_config.on_request_end.append(_on_response_headers)
    return trace_config
