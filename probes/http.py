"""The HTTP(S) prober: status, body content, latency, certificate expiry, per-phase timings.

Modelled on blackbox_exporter's prober/http.go: one fresh connection per probe, the whole probe
bounded by the target's timeout, phases summed over redirect hops.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache

import aiohttp

from monitor.model import FailureReason, ProbeOutcome
from monitor.targets import HttpExpect, HttpTarget
from probes.base import PhaseTimer, ProbeContext, ProbeResponse, success_outcome
from probes.tls import earliest_expiry, handshake_listener, tls_error_detail

__all__ = ["probe_http"]

_SHOWN_TEXT = 60  # characters of an expected text or pattern quoted in a detail


async def probe_http(target: HttpTarget, context: ProbeContext) -> ProbeOutcome:
    """Run one HTTP probe of `target`; failures come back as an outcome, never as an exception."""
    timeout = target.timeout.total_seconds()
    timer = PhaseTimer()
    tls = target.tls
    try:
        ssl_context = context.ssl_context(tls)
    except (ssl.SSLError, OSError) as exc:
        return ProbeOutcome(success=False, reason=FailureReason.TLS, detail=f"cannot load ca_file: {exc}")
    checks = _body_checks(target.expect)
    session = context.session
    status_code: int | None = None
    certificates: tuple[bytes, ...] = ()
    text = ""
    started = time.perf_counter()
    try:
        with handshake_listener(timer.handshake_started):
            async with asyncio.timeout(timeout):
                async with session.request(
                    target.method,
                    target.url,
                    headers=target.headers or None,
                    data=target.body.encode() if target.body is not None else None,
                    # aiohttp gives up when the redirect count reaches max_redirects: +1 so that
                    # max_redirects hops are followed, as configured.
                    allow_redirects=target.max_redirects > 0,
                    max_redirects=target.max_redirects + 1,
                    ssl=ssl_context,
                    server_hostname=tls.server_name,
                    trace_request_ctx=timer,
                ) as response:
                    status_code = response.status
                    if isinstance(response, ProbeResponse):
                        certificates = response.peer_certificates
                    body = await _read_body(response.content, context.body_limit, keep=checks is not None)
                    if timer.headers_at is not None:
                        timer.transfer = time.perf_counter() - timer.headers_at
                    if checks is not None:
                        text = _decode(body, response.charset)
    except Exception as exc:  # classified below; anything unknown goes back up
        reason, detail = _classify(exc, timeout)
        return ProbeOutcome(
            success=False,
            reason=reason,
            detail=detail,
            status_code=status_code,
            phases=timer.as_dict(),
            cert_expiry=earliest_expiry(certificates) if certificates else None,
        )
    elapsed = time.perf_counter() - started
    cert_expiry = earliest_expiry(certificates) if certificates else None
    phases = timer.as_dict()

    if not target.expect.status_ok(status_code):
        return ProbeOutcome(
            success=False,
            reason=FailureReason.STATUS,
            detail=f"unexpected status {status_code}",
            status_code=status_code,
            phases=phases,
            cert_expiry=cert_expiry,
        )
    if checks is not None and (mismatch := checks.mismatch(text)) is not None:
        return ProbeOutcome(
            success=False,
            reason=FailureReason.BODY_MISMATCH,
            detail=mismatch,
            status_code=status_code,
            phases=phases,
            cert_expiry=cert_expiry,
        )
    return success_outcome(
        context,
        elapsed=elapsed,
        max_latency=target.max_latency,
        min_cert_days=target.tls.min_cert_days,
        cert_expiry=cert_expiry,
        status_code=status_code,
        phases=phases,
    )


async def _read_body(content: aiohttp.StreamReader, limit: int, *, keep: bool) -> bytes:
    """Read at most `limit` bytes; the rest is dropped with the connection, so a huge page is harmless."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        size += len(chunk)
        if keep:
            chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class _BodyChecks:
    contains: tuple[str, ...]
    not_contains: tuple[str, ...]
    matches: tuple[re.Pattern[str], ...]
    not_matches: tuple[re.Pattern[str], ...]

    def mismatch(self, text: str) -> str | None:
        """Why `text` is not a healthy body, or None."""
        for wanted in self.contains:
            if wanted not in text:
                return f"body does not contain {_shown(wanted)}"
        for unwanted in self.not_contains:
            if unwanted in text:
                return f"body contains {_shown(unwanted)}"
        for pattern in self.matches:
            if pattern.search(text) is None:
                return f"body does not match {_shown(pattern.pattern)}"
        for pattern in self.not_matches:
            if pattern.search(text) is not None:
                return f"body matches {_shown(pattern.pattern)}"
        return None


def _body_checks(expect: HttpExpect) -> _BodyChecks | None:
    if not (
        expect.body_contains or expect.body_not_contains or expect.body_matches or expect.body_not_matches
    ):
        return None
    return _compile_checks(
        tuple(expect.body_contains),
        tuple(expect.body_not_contains),
        tuple(expect.body_matches),
        tuple(expect.body_not_matches),
    )


# Keyed by the pattern texts, so every target with the same expectations shares one compiled set and a
# reloaded config reuses them; bounded so replaced configs do not accumulate.
@lru_cache(maxsize=1024)
def _compile_checks(
    contains: tuple[str, ...],
    not_contains: tuple[str, ...],
    matches: tuple[str, ...],
    not_matches: tuple[str, ...],
) -> _BodyChecks:
    return _BodyChecks(
        contains=contains,
        not_contains=not_contains,
        matches=tuple(re.compile(pattern) for pattern in matches),
        not_matches=tuple(re.compile(pattern) for pattern in not_matches),
    )


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_TEXT else text[:_SHOWN_TEXT] + "…")


def _classify(exc: Exception, timeout: float) -> tuple[FailureReason, str]:
    """Map a request failure to a reason and a short detail (never header values: they may hold tokens)."""
    if isinstance(exc, TimeoutError):
        return FailureReason.TIMEOUT, f"timed out after {timeout:g}s"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return FailureReason.ERROR, "too many redirects"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return FailureReason.TLS, tls_error_detail(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, socket.gaierror):
            return FailureReason.DNS, f"cannot resolve {exc.host}: {cause.strerror or cause}".lower()
        if isinstance(exc, aiohttp.ClientSSLError) or isinstance(cause, ssl.SSLError):
            return FailureReason.TLS, tls_error_detail(cause)
        if isinstance(cause, ConnectionRefusedError):
            return FailureReason.REFUSED, "connection refused"
        if isinstance(cause, ConnectionResetError):
            return FailureReason.REFUSED, "connection reset"
        return FailureReason.ERROR, f"cannot connect: {cause.strerror or type(cause).__name__}".lower()
    if isinstance(exc, ssl.SSLError):
        return FailureReason.TLS, tls_error_detail(exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return FailureReason.ERROR, "server closed the connection without a response"
    if isinstance(exc, ConnectionResetError) or (
        isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__, ConnectionResetError)
    ):
        return FailureReason.REFUSED, "connection reset"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return FailureReason.ERROR, "incomplete or invalid response body"
    if isinstance(exc, aiohttp.ClientResponseError):
        return FailureReason.ERROR, "invalid http response"
    if isinstance(exc, aiohttp.InvalidURL):
        return FailureReason.ERROR, "invalid url or redirect location"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return FailureReason.ERROR, f"request failed: {type(exc).__name__}"
    raise exc
