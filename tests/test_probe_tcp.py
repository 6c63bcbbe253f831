"""The TCP prober against real asyncio servers on 127.0.0.1, plain and TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import TcpTarget
from monitor.model import FailureReason
from probes import ProbeContext, probe_tcp, run_probe
from tests.certs import TestCA

Serve = Callable[..., Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start TCP servers on 127.0.0.1: answering (closing at once), silent, or with a delayed handshake."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []
    release = asyncio.Event()

    async def start(
        *, ssl_context: ssl.SSLContext | None = None, silent: bool = False, handshake_delay: float = 0
    ) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            if silent:
                # Never speaks: a TLS client waits for a ServerHello that does not come.
                await release.wait()
            writer.close()

        if handshake_delay and ssl_context is not None:
            server = await asyncio.get_running_loop().create_server(
                lambda: _LateTls(ssl_context, handshake_delay), "127.0.0.1", 0
            )
        else:
            server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    release.set()
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()
    await asyncio.sleep(0)


class _LateTls(asyncio.Protocol):
    """Starts its side of the TLS handshake only after `delay` seconds: a slow TLS server."""

    def __init__(self, ssl_context: ssl.SSLContext, delay: float) -> None:
        self._ssl_context = ssl_context
        self._delay = delay
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # Leave the ClientHello in the kernel buffer, where start_tls will find it.
        transport.pause_reading()
        self._task = asyncio.get_running_loop().create_task(self._handshake_later(transport))

    async def _handshake_later(self, transport: asyncio.Transport) -> None:
        await asyncio.sleep(self._delay)
        loop = asyncio.get_running_loop()
        tls_transport = await loop.start_tls(transport, self, self._ssl_context, server_side=True)
        if tls_transport is not None:
            tls_transport.close()


@pytest.fixture
async def context() -> AsyncIterator[ProbeContext]:
    """A ProbeContext closed after the test."""
    probe_context = ProbeContext()
    yield probe_context
    await probe_context.close()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    """A private CA whose PEM is the targets' ca_file."""
    return TestCA(tmp_path)


def target(host: str, port: int, **fields: Any) -> TcpTarget:
    """A TcpTarget as the config loader would build it."""
    return TcpTarget.model_validate(
        {"type": "tcp", "name": "csdl-hotich", "host": host, "port": port, **fields}
    )


def closed_port() -> int:
    """A port that was just bound and released: nothing listens there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_open_port_succeeds(serve: Serve, context: ProbeContext) -> None:
    """A listening port is up, with a measured connect phase and no tls phase."""
    port = await serve()
    outcome = await probe_tcp(target("127.0.0.1", port), context)
    assert outcome.success and not outcome.degraded
    assert outcome.reason is None
    assert outcome.phases["connect"] > 0
    assert outcome.phases["tls"] == 0
    assert outcome.cert_expiry is None


async def test_hostname_is_resolved(serve: Serve, context: ProbeContext) -> None:
    """localhost resolves (to ::1 and 127.0.0.1); a server on 127.0.0.1 is found."""
    port = await serve()
    outcome = await probe_tcp(target("localhost", port), context)
    assert outcome.success, outcome.detail


async def test_refused(context: ProbeContext) -> None:
    """Nothing listening: reason refused, also when every resolved address refuses."""
    port = closed_port()
    for host in ("127.0.0.1", "localhost"):
        outcome = await probe_tcp(target(host, port), context)
        assert outcome.reason is FailureReason.REFUSED, outcome.detail
        assert outcome.detail == "connection refused"


async def test_dns_failure(context: ProbeContext) -> None:
    """A name under .invalid: reason dns."""
    outcome = await probe_tcp(target("csdl.invalid", 5432), context)
    assert outcome.reason is FailureReason.DNS
    assert "csdl.invalid" in outcome.detail


async def test_tls_handshake_timeout(serve: Serve, context: ProbeContext) -> None:
    """A server that accepts but never answers the handshake times out within the probe timeout."""
    port = await serve(silent=True)
    started = time.perf_counter()
    outcome = await probe_tcp(target("127.0.0.1", port, timeout="300ms", tls={"verify": False}), context)
    elapsed = time.perf_counter() - started
    assert outcome.reason is FailureReason.TIMEOUT
    assert outcome.detail == "timed out after 0.3s during the tls handshake"
    assert outcome.phases["connect"] > 0
    assert 0.25 <= elapsed < 0.8


async def test_tls_with_custom_ca(serve: Serve, context: ProbeContext, ca: TestCA) -> None:
    """TLS verifies with ca_file, reports cert_expiry and a tls phase; without ca_file it fails tls."""
    cert = ca.issue(valid_for=timedelta(days=120))
    port = await serve(ssl_context=cert.server_context)
    outcome = await probe_tcp(target("127.0.0.1", port, tls={"ca_file": str(ca.ca_file)}), context)
    assert outcome.success and not outcome.degraded, outcome.detail
    assert outcome.cert_expiry == pytest.approx(cert.expiry_epoch, abs=1)
    assert outcome.phases["tls"] > 0
    untrusted = await probe_tcp(target("127.0.0.1", port, tls={}), context)
    assert untrusted.reason is FailureReason.TLS
    assert untrusted.detail.startswith("certificate verify failed")


async def test_tls_soon_expiring_certificate(serve: Serve, context: ProbeContext, ca: TestCA) -> None:
    """Fewer days left than min_cert_days: success, degraded cert_expiring, with the exact expiry."""
    cert = ca.issue(valid_for=timedelta(days=7))
    port = await serve(ssl_context=cert.server_context)
    outcome = await probe_tcp(
        target("127.0.0.1", port, tls={"ca_file": str(ca.ca_file), "min_cert_days": 10}), context
    )
    assert outcome.success and outcome.degraded
    assert outcome.reason is FailureReason.CERT_EXPIRING
    assert outcome.cert_expiry == pytest.approx(cert.expiry_epoch, abs=1)
    assert "expires in 7.0 days" in outcome.detail


async def test_tls_expired_certificate(serve: Serve, context: ProbeContext, ca: TestCA) -> None:
    """Expired: verify on fails tls; verify off succeeds degraded with the past expiry."""
    cert = ca.issue(valid_for=timedelta(days=-1))
    port = await serve(ssl_context=cert.server_context)
    verified = await probe_tcp(target("127.0.0.1", port, tls={"ca_file": str(ca.ca_file)}), context)
    assert verified.reason is FailureReason.TLS
    assert "expired" in verified.detail
    unverified = await probe_tcp(target("127.0.0.1", port, tls={"verify": False}), context)
    assert unverified.success and unverified.degraded
    assert unverified.reason is FailureReason.CERT_EXPIRING
    assert unverified.cert_expiry == pytest.approx(cert.expiry_epoch, abs=1)
    assert unverified.cert_expiry < time.time()


async def test_tls_against_plain_server_fails_tls(serve: Serve, context: ProbeContext) -> None:
    """A plain server that hangs up during the handshake is a tls failure, not refused."""
    port = await serve()
    outcome = await probe_tcp(target("127.0.0.1", port, tls={"verify": False}), context)
    assert outcome.reason is FailureReason.TLS


async def test_max_latency_marks_slow(serve: Serve, context: ProbeContext, ca: TestCA) -> None:
    """A probe slower than max_latency (a server answering its handshake late) is degraded slow."""
    cert = ca.issue()
    port = await serve(ssl_context=cert.server_context, handshake_delay=0.1)
    outcome = await probe_tcp(
        target("127.0.0.1", port, max_latency="50ms", tls={"ca_file": str(ca.ca_file)}), context
    )
    assert outcome.success and outcome.degraded, outcome.detail
    assert outcome.reason is FailureReason.SLOW
    assert outcome.phases["tls"] >= 0.09
    assert outcome.phases["connect"] < 0.09


async def test_run_probe_dispatches_tcp(serve: Serve, context: ProbeContext) -> None:
    """run_probe picks the tcp prober for a tcp target."""
    port = await serve()
    assert (await run_probe(target("127.0.0.1", port), context)).success
