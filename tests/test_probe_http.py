"""The HTTP prober against real aiohttp servers on 127.0.0.1, with real TLS from a throwaway CA."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor.config import HttpTarget
from monitor.model import FailureReason, ProbeOutcome
from probes import PROBERS, ProbeContext, probe_http, run_probe
from tests.certs import TestCA

PORTAL_PAGE = "<html><body>Cổng dịch vụ công tỉnh: hoạt động bình thường</body></html>"
MAINTENANCE_PAGE = "<html><body>Hệ thống đang bảo trì, vui lòng quay lại sau.</body></html>"
SECRET_TOKEN = "Bearer s3cr3t-token-value"

# Client ports seen by /peer, one per connection.
PEERS = web.AppKey("peers", list[int])

StartServer = Callable[..., Awaitable[TestServer]]


def make_app(release: asyncio.Event) -> web.Application:
    """The fake dossier portal: healthy, failing, slow, redirecting and maintenance pages."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text=PORTAL_PAGE, content_type="text/html")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="lỗi")

    async def maintenance(request: web.Request) -> web.Response:
        return web.Response(text=MAINTENANCE_PAGE, content_type="text/html")

    async def api_status(request: web.Request) -> web.Response:
        return web.json_response({"status": request.query.get("state", "ok"), "version": "2.3"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["seconds"]))
        return web.Response(text=PORTAL_PAGE)

    async def hang(request: web.Request) -> web.Response:
        # Held until the test ends, so a probe timeout is the only way out.
        await release.wait()
        return web.Response(text="too late")

    async def redirect(request: web.Request) -> web.Response:
        hops = int(request.match_info["hops"])
        raise web.HTTPFound("/ok" if hops <= 1 else f"/redirect/{hops - 1}")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        return web.Response(text=f"{request.method} {body} token={request.headers.get('X-Api-Key', '')}")

    async def peer(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.app[PEERS].append(request.transport.get_extra_info("peername")[1])
        return web.Response(text="ok")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"a" * 65536
        for _ in range(32):  # 2 MiB before the marker
            await response.write(chunk)
        await response.write(b"END-OF-PAGE")
        await response.write_eof()
        return response

    app = web.Application()
    app[PEERS] = []
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/maintenance", maintenance)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/hang", hang)
    app.router.add_get("/redirect/{hops}", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_post("/echo", echo)
    app.router.add_get("/peer", peer)
    app.router.add_get("/big", big)
    return app


@pytest.fixture
async def start_server(aiohttp_server: Any) -> AsyncIterator[StartServer]:
    """Start the fake portal (plain or with a TLS context); hanging handlers are released at the end."""
    release = asyncio.Event()

    async def start(*, ssl_context: Any = None) -> TestServer:
        return await aiohttp_server(make_app(release), ssl=ssl_context)

    yield start
    release.set()


@pytest.fixture
async def server(start_server: StartServer) -> TestServer:
    """A plain-HTTP fake portal."""
    return await start_server()


@pytest.fixture
async def context() -> AsyncIterator[ProbeContext]:
    """A ProbeContext closed after the test (its session must not leak)."""
    probe_context = ProbeContext()
    yield probe_context
    await probe_context.close()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    """A private CA; its PEM is the `ca_file` of verifying targets."""
    return TestCA(tmp_path)


def target(url: str, **fields: Any) -> HttpTarget:
    """An HttpTarget as the config loader would build it (durations parsed from strings)."""
    return HttpTarget.model_validate({"type": "http", "name": "cong-dvc", "url": url, **fields})


def url_of(server: TestServer, path: str) -> str:
    return f"{server.scheme}://127.0.0.1:{server.port}{path}"


def closed_port() -> int:
    """A port that was just bound and released: nothing listens there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- status and body -----------------------------------------------------------------------------


async def test_healthy_page_with_body_check_passes(server: TestServer, context: ProbeContext) -> None:
    """200 with the expected text is success, not degraded, with the status code recorded."""
    outcome = await probe_http(
        target(url_of(server, "/ok"), expect={"status": [200], "body_contains": ["hoạt động"]}), context
    )
    assert outcome == ProbeOutcome(
        success=True, status_code=200, phases=outcome.phases, cert_expiry=None, detail=""
    )
    assert outcome.result == "success"


@pytest.mark.parametrize("code", [500, 404])
async def test_unexpected_status_fails(server: TestServer, context: ProbeContext, code: int) -> None:
    """A 500 or 404 where 200 is expected fails with reason status and the code kept."""
    outcome = await probe_http(target(url_of(server, f"/status/{code}"), expect={"status": [200]}), context)
    assert not outcome.success
    assert outcome.reason is FailureReason.STATUS
    assert outcome.status_code == code
    assert outcome.detail == f"unexpected status {code}"


async def test_status_class_accepts_listed_codes(server: TestServer, context: ProbeContext) -> None:
    """An expected status list can mix classes and codes: 404 passes when listed explicitly."""
    outcome = await probe_http(
        target(url_of(server, "/status/404"), expect={"status": ["2xx", 404]}), context
    )
    assert outcome.success
    assert outcome.status_code == 404


async def test_maintenance_page_behind_200_is_body_mismatch(
    server: TestServer, context: ProbeContext
) -> None:
    """A maintenance page served with 200 fails: body_contains is not met."""
    outcome = await probe_http(
        target(url_of(server, "/maintenance"), expect={"body_contains": ["hoạt động bình thường"]}), context
    )
    assert not outcome.success
    assert outcome.reason is FailureReason.BODY_MISMATCH
    assert outcome.status_code == 200
    assert "does not contain" in outcome.detail


async def test_body_not_contains_catches_maintenance_text(server: TestServer, context: ProbeContext) -> None:
    """body_not_contains with the Vietnamese maintenance wording fails the probe and names the text."""
    outcome = await probe_http(
        target(url_of(server, "/maintenance"), expect={"body_not_contains": ["Hệ thống đang bảo trì"]}),
        context,
    )
    assert outcome.reason is FailureReason.BODY_MISMATCH
    assert outcome.detail == "body contains 'Hệ thống đang bảo trì'"
    healthy = await probe_http(
        target(url_of(server, "/ok"), expect={"body_not_contains": ["Hệ thống đang bảo trì"]}), context
    )
    assert healthy.success


async def test_body_regex_match_and_not_match(server: TestServer, context: ProbeContext) -> None:
    """body_matches / body_not_matches apply regular expressions to the decoded body."""
    expect = {"body_matches": [r'"status":\s*"ok"'], "body_not_matches": [r'"version":\s*"1\.']}
    passing = await probe_http(target(url_of(server, "/api/status"), expect=expect), context)
    assert passing.success
    failing = await probe_http(target(url_of(server, "/api/status?state=degraded"), expect=expect), context)
    assert failing.reason is FailureReason.BODY_MISMATCH
    assert failing.detail.startswith("body does not match")
    old_version = await probe_http(
        target(url_of(server, "/api/status"), expect={"body_not_matches": [r'"version":\s*"2\.\d"']}), context
    )
    assert old_version.reason is FailureReason.BODY_MISMATCH
    assert old_version.detail.startswith("body matches")


async def test_post_sends_body_and_headers(server: TestServer, context: ProbeContext) -> None:
    """Method, body and headers reach the server."""
    outcome = await probe_http(
        target(
            url_of(server, "/echo"),
            method="POST",
            body="ping",
            headers={"X-Api-Key": "k1"},
            expect={"body_contains": ["POST ping token=k1"]},
        ),
        context,
    )
    assert outcome.success, outcome.detail


async def test_body_read_is_capped(server: TestServer) -> None:
    """Only body_limit bytes are read: text past the cap is never seen, and the probe still ends."""
    async with ProbeContext(body_limit=256 * 1024) as capped:
        outcome = await probe_http(
            target(url_of(server, "/big"), expect={"body_contains": ["END-OF-PAGE"]}), capped
        )
    assert outcome.reason is FailureReason.BODY_MISMATCH
    assert outcome.status_code == 200


# --- network failures ----------------------------------------------------------------------------


async def test_timeout_returns_within_the_timeout(server: TestServer, context: ProbeContext) -> None:
    """A handler that never answers ends the probe at its timeout with reason timeout."""
    started = time.perf_counter()
    outcome = await probe_http(target(url_of(server, "/hang"), timeout="300ms"), context)
    elapsed = time.perf_counter() - started
    assert outcome.reason is FailureReason.TIMEOUT
    assert not outcome.success
    assert outcome.detail == "timed out after 0.3s"
    assert 0.25 <= elapsed < 0.8


async def test_refused_port(context: ProbeContext) -> None:
    """Nothing listening: reason refused."""
    outcome = await probe_http(target(f"http://127.0.0.1:{closed_port()}/"), context)
    assert outcome.reason is FailureReason.REFUSED
    assert outcome.detail == "connection refused"
    assert outcome.status_code is None


async def test_dns_failure(context: ProbeContext) -> None:
    """A name under .invalid cannot resolve: reason dns."""
    outcome = await probe_http(target("http://dichvucong.invalid/"), context)
    assert outcome.reason is FailureReason.DNS
    assert "dichvucong.invalid" in outcome.detail


async def test_slow_response_is_degraded(server: TestServer, context: ProbeContext) -> None:
    """Above max_latency the probe succeeds but is degraded with reason slow."""
    outcome = await probe_http(target(url_of(server, "/slow?seconds=0.15"), max_latency="50ms"), context)
    assert outcome.success
    assert outcome.degraded
    assert outcome.reason is FailureReason.SLOW
    assert outcome.result == "degraded"
    assert outcome.detail.startswith("slow: ")
    fast = await probe_http(target(url_of(server, "/ok"), max_latency="5s"), context)
    assert fast.success and not fast.degraded


# --- redirects -----------------------------------------------------------------------------------


async def test_redirects_are_followed_up_to_the_limit(server: TestServer, context: ProbeContext) -> None:
    """Exactly max_redirects hops are followed; one more is an error."""
    followed = await probe_http(
        target(url_of(server, "/redirect/3"), max_redirects=3, expect={"body_contains": ["hoạt động"]}),
        context,
    )
    assert followed.success, followed.detail
    assert followed.status_code == 200
    too_many = await probe_http(target(url_of(server, "/redirect/3"), max_redirects=2), context)
    assert too_many.reason is FailureReason.ERROR
    assert too_many.detail == "too many redirects"


async def test_redirect_loop_fails(server: TestServer, context: ProbeContext) -> None:
    """A redirect loop stops at max_redirects with error 'too many redirects'."""
    outcome = await probe_http(target(url_of(server, "/loop")), context)
    assert not outcome.success
    assert outcome.reason is FailureReason.ERROR
    assert outcome.detail == "too many redirects"


async def test_max_redirects_zero_returns_the_redirect(server: TestServer, context: ProbeContext) -> None:
    """With max_redirects 0 the 302 itself is the answer, checked against the expected statuses."""
    accepted = await probe_http(
        target(url_of(server, "/loop"), max_redirects=0, expect={"status": [302]}), context
    )
    assert accepted.success
    assert accepted.status_code == 302
    rejected = await probe_http(target(url_of(server, "/loop"), max_redirects=0), context)
    assert rejected.reason is FailureReason.STATUS
    assert rejected.status_code == 302


# --- phases and connections ----------------------------------------------------------------------


async def test_phases_present_and_non_negative(server: TestServer, context: ProbeContext) -> None:
    """All five phases are reported; connect and processing are measured on a plain HTTP probe."""
    outcome = await probe_http(target(f"http://localhost:{server.port}/slow?seconds=0.05"), context)
    assert outcome.success
    assert set(outcome.phases) == {"dns", "connect", "tls", "processing", "transfer"}
    assert all(value >= 0 for value in outcome.phases.values())
    assert outcome.phases["tls"] == 0
    assert outcome.phases["connect"] > 0
    # The handler sleeps 50 ms between reading the request and answering: that is processing.
    assert outcome.phases["processing"] >= 0.04


async def test_every_probe_uses_a_fresh_connection(server: TestServer, context: ProbeContext) -> None:
    """Three probes through the one shared session arrive on three different connections."""
    for _ in range(3):
        assert (await probe_http(target(url_of(server, "/peer")), context)).success
    peers = server.app[PEERS]
    assert len(peers) == 3
    assert len(set(peers)) == 3


async def test_server_going_down_is_seen_at_once(start_server: StartServer, context: ProbeContext) -> None:
    """No pooled connection hides a stopped server: the next probe is refused."""
    server = await start_server()
    url = url_of(server, "/ok")
    assert (await probe_http(target(url), context)).success
    await server.close()
    assert (await probe_http(target(url), context)).reason is FailureReason.REFUSED


async def test_detail_never_contains_header_values(server: TestServer, context: ProbeContext) -> None:
    """Failure details and the outcome's repr leave out request header values."""
    headers = {"Authorization": SECRET_TOKEN}
    for path in ("/status/500", "/loop", "/hang"):
        outcome = await probe_http(target(url_of(server, path), headers=headers, timeout="200ms"), context)
        assert not outcome.success
        assert "s3cr3t" not in repr(outcome)


# --- TLS -----------------------------------------------------------------------------------------


async def test_https_with_custom_ca(start_server: StartServer, context: ProbeContext, ca: TestCA) -> None:
    """A certificate from a private CA verifies with ca_file and fails without it."""
    cert = ca.issue(valid_for=timedelta(days=200))
    server = await start_server(ssl_context=cert.server_context)
    trusted = await probe_http(target(url_of(server, "/ok"), tls={"ca_file": str(ca.ca_file)}), context)
    assert trusted.success and not trusted.degraded, trusted.detail
    assert trusted.cert_expiry == pytest.approx(cert.expiry_epoch, abs=1)
    assert trusted.phases["tls"] > 0
    assert trusted.phases["connect"] > 0
    untrusted = await probe_http(target(url_of(server, "/ok")), context)
    assert untrusted.reason is FailureReason.TLS
    assert untrusted.detail.startswith("certificate verify failed")


async def test_expired_certificate(start_server: StartServer, context: ProbeContext, ca: TestCA) -> None:
    """Expired: verify on fails with tls; verify off succeeds, degraded cert_expiring, expiry in the past."""
    cert = ca.issue(valid_for=timedelta(days=-3))
    server = await start_server(ssl_context=cert.server_context)
    verified = await probe_http(target(url_of(server, "/ok"), tls={"ca_file": str(ca.ca_file)}), context)
    assert not verified.success
    assert verified.reason is FailureReason.TLS
    assert "expired" in verified.detail
    unverified = await probe_http(target(url_of(server, "/ok"), tls={"verify": False}), context)
    assert unverified.success
    assert unverified.degraded
    assert unverified.reason is FailureReason.CERT_EXPIRING
    assert unverified.cert_expiry == pytest.approx(cert.expiry_epoch, abs=1)
    assert unverified.cert_expiry < time.time()
    assert unverified.detail.startswith("certificate expired 3.0 days ago")


async def test_soon_expiring_certificate(
    start_server: StartServer, context: ProbeContext, ca: TestCA
) -> None:
    """Fewer days left than min_cert_days: success, degraded cert_expiring, exact cert_expiry."""
    cert = ca.issue(valid_for=timedelta(days=5))
    server = await start_server(ssl_context=cert.server_context)
    outcome = await probe_http(
        target(url_of(server, "/ok"), tls={"ca_file": str(ca.ca_file), "min_cert_days": 14}), context
    )
    assert outcome.success and outcome.degraded
    assert outcome.reason is FailureReason.CERT_EXPIRING
    assert outcome.cert_expiry == pytest.approx(cert.expiry_epoch, abs=1)
    assert "expires in 5.0 days" in outcome.detail
    relaxed = await probe_http(
        target(url_of(server, "/ok"), tls={"ca_file": str(ca.ca_file), "min_cert_days": 3}), context
    )
    assert relaxed.success and not relaxed.degraded


async def test_cert_expiring_uses_injected_clock(start_server: StartServer, ca: TestCA) -> None:
    """The expiry threshold is judged against the context's wall clock, so time can be moved forward."""
    cert = ca.issue(valid_for=timedelta(days=30))
    server = await start_server(ssl_context=cert.server_context)
    tls = {"ca_file": str(ca.ca_file), "min_cert_days": 14}
    async with ProbeContext(wall_clock=lambda: time.time() + 20 * 86400) as later:
        outcome = await probe_http(target(url_of(server, "/ok"), tls=tls), later)
    assert outcome.reason is FailureReason.CERT_EXPIRING
    assert "expires in 10.0 days" in outcome.detail


async def test_server_name_overrides_sni_and_hostname(
    start_server: StartServer, context: ProbeContext, ca: TestCA
) -> None:
    """tls.server_name verifies a certificate for a name other than the URL's host."""
    cert = ca.issue("dichvucong.example.vn")
    server = await start_server(ssl_context=cert.server_context)
    named = await probe_http(
        target(
            url_of(server, "/ok"), tls={"ca_file": str(ca.ca_file), "server_name": "dichvucong.example.vn"}
        ),
        context,
    )
    assert named.success, named.detail
    mismatched = await probe_http(target(url_of(server, "/ok"), tls={"ca_file": str(ca.ca_file)}), context)
    assert mismatched.reason is FailureReason.TLS


async def test_failed_status_still_reports_cert_expiry(
    start_server: StartServer, context: ProbeContext, ca: TestCA
) -> None:
    """A status failure over TLS keeps the certificate expiry (it is exported regardless)."""
    cert = ca.issue(valid_for=timedelta(days=90))
    server = await start_server(ssl_context=cert.server_context)
    outcome = await probe_http(
        target(url_of(server, "/status/503"), tls={"ca_file": str(ca.ca_file)}), context
    )
    assert outcome.reason is FailureReason.STATUS
    assert outcome.cert_expiry == pytest.approx(cert.expiry_epoch, abs=1)


async def test_ssl_contexts_are_cached(context: ProbeContext, ca: TestCA) -> None:
    """Equal TLS settings share one SSLContext; different ones do not."""
    first = target("https://127.0.0.1/", tls={"ca_file": str(ca.ca_file)}).tls
    second = target("https://127.0.0.2/", tls={"ca_file": str(ca.ca_file), "server_name": "a.vn"}).tls
    other = target("https://127.0.0.1/", tls={"verify": False}).tls
    assert context.ssl_context(first) is context.ssl_context(second)
    assert context.ssl_context(first) is not context.ssl_context(other)


# --- run_probe -----------------------------------------------------------------------------------


async def test_run_probe_dispatches_by_type(server: TestServer, context: ProbeContext) -> None:
    """run_probe picks the http prober for an http target."""
    outcome = await run_probe(target(url_of(server, "/ok")), context)
    assert outcome.success
    assert outcome.status_code == 200


async def test_run_probe_turns_exceptions_into_error(
    monkeypatch: pytest.MonkeyPatch, context: ProbeContext
) -> None:
    """An exception escaping a prober becomes reason error, without the exception's message."""

    async def broken(target: HttpTarget, context: ProbeContext) -> ProbeOutcome:
        raise RuntimeError(f"boom {SECRET_TOKEN}")

    monkeypatch.setitem(PROBERS, "http", broken)
    outcome = await run_probe(target("http://127.0.0.1/"), context)
    assert not outcome.success
    assert outcome.reason is FailureReason.ERROR
    assert outcome.detail.startswith("probe crashed: RuntimeError at test_probe_http.py:")
    assert "s3cr3t" not in outcome.detail


async def test_run_probe_lets_cancellation_through(
    monkeypatch: pytest.MonkeyPatch, context: ProbeContext
) -> None:
    """Cancellation is not a probe failure: it propagates to the scheduler."""

    async def cancelled(target: HttpTarget, context: ProbeContext) -> ProbeOutcome:
        raise asyncio.CancelledError

    monkeypatch.setitem(PROBERS, "http", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await run_probe(target("http://127.0.0.1/"), context)


async def test_cancelling_a_running_probe_propagates(server: TestServer, context: ProbeContext) -> None:
    """A probe cancelled mid-request (scheduler shutdown) raises CancelledError instead of returning."""
    task = asyncio.create_task(run_probe(target(url_of(server, "/hang")), context))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
