"""The TCP prober: connect (optionally TLS with certificate checks), like blackbox_exporter's tcp prober.

Phases: `connect` (name resolution included) and `tls` (the handshake; 0 without TLS).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from typing import Any

from monitor.model import FailureReason, ProbeOutcome
from monitor.targets import TcpTarget
from probes.base import ProbeContext, success_outcome
from probes.tls import earliest_expiry, peer_certificates, tls_error_detail

__all__ = ["probe_tcp"]

# The TLS close (close_notify) runs after the probe has its answer; do not let a silent peer keep
# the transport around for asyncio's default 30 s.
_TLS_SHUTDOWN_TIMEOUT = 2.0


async def probe_tcp(target: TcpTarget, context: ProbeContext) -> ProbeOutcome:
    """Run one TCP (or TLS) connect probe of `target`; failures come back as an outcome."""
    timeout = target.timeout.total_seconds()
    tls = target.tls
    try:
        ssl_context = context.ssl_context(tls) if tls is not None else None
    except (ssl.SSLError, OSError) as exc:
        return ProbeOutcome(success=False, reason=FailureReason.TLS, detail=f"cannot load ca_file: {exc}")
    loop = asyncio.get_running_loop()
    phases = {"connect": 0.0, "tls": 0.0}
    transport: asyncio.BaseTransport | None = None
    certificates: tuple[bytes, ...] = ()
    in_handshake = False
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await _connect(loop, target.host, target.port)
            connected = time.perf_counter()
            phases["connect"] = connected - started
            if ssl_context is not None and tls is not None:
                in_handshake = True
                tls_transport = await loop.start_tls(
                    transport,
                    protocol,
                    ssl_context,
                    server_hostname=tls.server_name or target.host,
                    ssl_shutdown_timeout=_TLS_SHUTDOWN_TIMEOUT,
                )
                in_handshake = False
                phases["tls"] = time.perf_counter() - connected
                if tls_transport is not None:
                    transport = tls_transport
                    certificates = peer_certificates(transport.get_extra_info("ssl_object"))
    except Exception as exc:  # classified below; anything unknown goes back up
        reason, detail = _classify(exc, timeout, target.host, in_handshake)
        return ProbeOutcome(success=False, reason=reason, detail=detail, phases=phases)
    finally:
        if transport is not None:
            transport.close()
    return success_outcome(
        context,
        elapsed=time.perf_counter() - started,
        max_latency=target.max_latency,
        min_cert_days=tls.min_cert_days if tls is not None else 0,
        cert_expiry=earliest_expiry(certificates) if certificates else None,
        phases=phases,
    )


async def _connect(
    loop: asyncio.AbstractEventLoop, host: str, port: int
) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """Connect to each resolved address in turn.

    Done here rather than by `create_connection(host, ...)` because that folds several failures into
    one errno-less "Multiple exceptions" error, and "refused" must stay recognisable.
    """
    try:
        ipaddress.ip_address(host)
        addresses: list[tuple[Any, ...]] = [(host, port)]
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [info[4] for info in infos]
    errors: list[OSError] = []
    for address in addresses:
        try:
            return await loop.create_connection(asyncio.Protocol, address[0], address[1])
        except OSError as exc:
            errors.append(exc)
    # A refusal on any address says more than e.g. "address not available" on an unused IPv6 one.
    raise next((error for error in errors if isinstance(error, ConnectionRefusedError)), errors[0])


def _classify(exc: Exception, timeout: float, host: str, in_handshake: bool) -> tuple[FailureReason, str]:
    if isinstance(exc, TimeoutError):
        stage = "during the tls handshake" if in_handshake else "connecting"
        return FailureReason.TIMEOUT, f"timed out after {timeout:g}s {stage}"
    if isinstance(exc, socket.gaierror):
        return FailureReason.DNS, f"cannot resolve {host}: {exc.strerror or exc}".lower()
    if isinstance(exc, ssl.SSLError):
        return FailureReason.TLS, tls_error_detail(exc)
    if in_handshake and isinstance(exc, OSError | EOFError | ConnectionError):
        return FailureReason.TLS, f"tls handshake failed: {type(exc).__name__}"
    if isinstance(exc, ConnectionRefusedError):
        return FailureReason.REFUSED, "connection refused"
    if isinstance(exc, ConnectionResetError):
        return FailureReason.REFUSED, "connection reset"
    if isinstance(exc, OSError):
        return FailureReason.ERROR, f"cannot connect: {exc.strerror or type(exc).__name__}".lower()
    raise exc
