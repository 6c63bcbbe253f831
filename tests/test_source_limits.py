"""Hostile dossier-source replies against real loopback servers: pages that ignore `end`, oversized and
endless bodies, next links and redirects to another origin, and a huge page parsed while the daemon's
/healthz keeps answering."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.config import load_config_text
from monitor.daemon import Daemon
from monitor.dossiers.model import SyncError, SyncFailure
from monitor.logging import scrub_text
from probes.sources.json_api import JsonApiSource, JsonApiSourceConfig
from tests.store_engines import StoreFactory

TOKEN = "vendor-bearer-token-51c2"
FIELDS = {"code": "soHoSo", "received_at": "ngayNhan", "due_at": "ngayHenTra"}


def record(index: int) -> dict[str, Any]:
    return {
        "soHoSo": f"000.00.12.H12-260301-{index:06d}",
        "ngayNhan": "02/03/2026 08:00:00",
        "ngayHenTra": "09/03/2026 17:00:00",
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """One loopback HTTP server with a single catch-all handler; records each request's headers."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        return await self.handler(request)

    async def __aenter__(self) -> Server:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def source(url: str, **options: Any) -> JsonApiSource:
    config = {
        "name": "vendor",
        "type": "json_api",
        "url": url,
        "fields": FIELDS,
        "date_formats": ["%d/%m/%Y %H:%M:%S"],
        "items_path": "data",
        "auth": {"kind": "bearer", "token": TOKEN},
        "retry_wait": "1ms",
        "timeout": "10s",
        **options,
    }
    return JsonApiSource(JsonApiSourceConfig.model_validate(config))


@pytest.fixture
async def made() -> AsyncIterator[list[JsonApiSource]]:
    """Sources made by a test, closed afterwards."""
    sources: list[JsonApiSource] = []
    yield sources
    for item in sources:
        await item.close()


async def test_page_ignoring_end_fails_the_sync(made: list[JsonApiSource]) -> None:
    """A server that ignores `end` and sends 5,000 records for page_size 100 fails the sync, once."""

    async def everything(_request: web.Request) -> web.Response:
        return web.json_response({"data": [record(index) for index in range(5000)], "total": 5000})

    async with Server(everything) as server:
        made.append(
            vendor := source(
                server.url + "/hoso", page_size=100, pagination={"kind": "start_end"}, total_path="total"
            )
        )
        with pytest.raises(SyncError) as caught:
            await vendor.fetch(since=None)
    assert caught.value.reason == SyncFailure.OVERSIZED
    assert str(caught.value) == (
        "vendor: page 1 has 5000 records, more than page_size 100: the server ignores the paging parameters"
    )
    assert len(server.requests) == 1


async def test_reply_over_the_byte_cap_fails_without_retry(made: list[JsonApiSource]) -> None:
    """A 3 MiB reply against max_reply_bytes 1MiB fails with a message naming the source and the cap."""
    body = json.dumps({"data": [record(index) for index in range(30_000)]}).encode()
    assert len(body) > 3 * 1024 * 1024

    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async with Server(big) as server:
        made.append(vendor := source(server.url + "/hoso", max_reply_bytes="1MiB", attempts=3))
        with pytest.raises(SyncError) as caught:
            await vendor.fetch(since=None)
    assert caught.value.reason == SyncFailure.OVERSIZED
    assert str(caught.value) == (
        f"vendor: {server.url}/hoso reply is larger than max_reply_bytes (1048576 bytes);"
        " the sync is abandoned"
    )
    assert len(server.requests) == 1


async def test_endless_body_is_cut_at_the_cap(made: list[JsonApiSource]) -> None:
    """A server streaming forever (chunked, no length) is disconnected once the cap is passed."""
    sent = 0
    disconnected = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b'{"data": [' + b'{"soHoSo": "x"}, ' * 4000
        deadline = time.monotonic() + 20  # hard stop, whatever the client does
        try:
            while time.monotonic() < deadline:
                await response.write(chunk)
                sent += len(chunk)
        except ConnectionError:  # the client hung up: what a capped reader must do
            disconnected.set()
        return response

    async with Server(endless) as server:
        made.append(vendor := source(server.url + "/stream", max_reply_bytes="4MiB", timeout="30s"))
        started = time.monotonic()
        with pytest.raises(SyncError) as caught:
            await vendor.fetch(since=None)
        elapsed = time.monotonic() - started
        async with asyncio.timeout(5):
            await disconnected.wait()
    assert caught.value.reason == SyncFailure.OVERSIZED and "max_reply_bytes (4194304 bytes)" in str(
        caught.value
    )
    assert elapsed < 10
    # What the server pushed before noticing: the cap plus socket buffers, nowhere near 20 s of streaming.
    assert sent < 64 * 1024 * 1024


def _next_page_to(other: Server) -> Handler:
    async def first(_request: web.Request) -> web.Response:
        return web.json_response({"data": [record(0)], "next": other.url + "/page2"})

    return first


async def _last_page(_request: web.Request) -> web.Response:
    return web.json_response({"data": [record(1)], "next": None})


@pytest.mark.parametrize("auth", [{"kind": "bearer", "token": TOKEN}, {"kind": "api_key", "key": TOKEN}])
async def test_next_link_to_another_origin(made: list[JsonApiSource], auth: dict[str, str]) -> None:
    """A next link to another port is refused by default; allowed, it is followed without credentials
    (auth, or configured headers that may carry a key)."""
    async with Server(_last_page) as other, Server(_next_page_to(other)) as home:
        paging = {"kind": "next_link", "next_path": "next"}
        made.append(refused := source(home.url + "/hoso", pagination=paging, auth=auth))
        with pytest.raises(SyncError) as caught:
            await refused.fetch(since=None)
        assert f"leads to another origin ({other.url})" in str(caught.value)
        assert other.requests == []
        made.append(
            allowed := source(
                home.url + "/hoso",
                pagination=paging,
                auth=auth,
                allowed_origins=[other.url],
                headers={"X-Vendor-Token": TOKEN},
            )
        )
        batch = await allowed.fetch(since=None)
    assert len(batch.dossiers) == 2
    assert len(other.requests) == 1
    assert all(TOKEN not in value for value in other.requests[0].values())
    assert any(TOKEN in value for value in home.requests[-1].values())


async def test_redirect_to_another_origin(made: list[JsonApiSource]) -> None:
    """A redirect to another origin is refused by default; allowed, the credentials stay home."""
    async with Server(_last_page) as other:

        async def moved(_request: web.Request) -> web.Response:
            raise web.HTTPFound(other.url + "/moved")

        async with Server(moved) as home:
            made.append(refused := source(home.url + "/hoso"))
            with pytest.raises(SyncError, match=r"a redirect from .* leads to another origin"):
                await refused.fetch(since=None)
            assert other.requests == []
            made.append(allowed := source(home.url + "/hoso", allowed_origins=[other.url]))
            batch = await allowed.fetch(since=None)
    assert len(batch.dossiers) == 1
    assert "Authorization" not in other.requests[0]


def test_allowed_origins_are_origins() -> None:
    """allowed_origins takes bare origins only, with a short message naming the bad value."""
    with pytest.raises(ValueError, match=r"'http://127\.0\.0\.1:9/path' is not an origin"):
        source("http://127.0.0.1:8/x", allowed_origins=["http://127.0.0.1:9/path"])


@pytest.mark.slow
async def test_healthz_answers_while_a_huge_page_is_parsed(stores: StoreFactory, tmp_path: Path) -> None:
    """A 23 MB page of 150,000 records is decoded and mapped while /healthz keeps answering promptly."""
    # Most records are online submissions not received yet: rejected cheaply, so what is measured is the
    # fetch, decode and mapping of the page, not the deadline engine on 150,000 dossiers.
    records = [
        record(index) if index % 100 == 0 else {"soHoSo": f"x{index}"} | {"pad": "p" * 120}
        for index in range(150_000)
    ]
    body = json.dumps({"data": records}).encode()
    assert len(body) > 20_000_000
    served = asyncio.Event()

    async def huge(_request: web.Request) -> web.Response:
        served.set()
        return web.Response(body=body, content_type="application/json")

    async with Server(huge) as vendor:
        config = load_config_text(
            f"""
listen: 127.0.0.1:0
store: {json.dumps(stores.config(tmp_path / "store.db"))}
dossiers:
  sources:
    - name: vendor
      type: json_api
      url: {vendor.url}/hoso
      items_path: data
      fields: {{code: soHoSo, received_at: ngayNhan, due_at: ngayHenTra}}
      date_formats: ["%d/%m/%Y %H:%M:%S"]
      interval: 1h
      full_interval: 1h
""",
            environ={},
        )
        daemon = Daemon(config)
        await daemon.start()
        # (wall clock, CPU time of the loop's thread) at each answer.
        answered: list[tuple[float, float]] = []
        try:
            async with aiohttp.ClientSession() as session:
                async with asyncio.timeout(60):
                    await served.wait()
                    answered.append((time.perf_counter(), time.thread_time()))
                    stats = daemon.dossiers.sync.stats["vendor"]
                    while stats.last_success_at is None and stats.failed_since is None:
                        async with session.get(f"{daemon.base_url}/healthz") as response:
                            assert response.status == 200
                        answered.append((time.perf_counter(), time.thread_time()))
                        await asyncio.sleep(0.01)
        finally:
            await daemon.stop()
    assert stats.last_success_at is not None
    # Between two answers, the CPU the loop's thread spent is what held /healthz up: wall time alone
    # would also count the moments other processes on a shared machine had the CPU.
    pairs = list(itertools.pairwise(answered))
    busiest = max(later[1] - earlier[1] for earlier, later in pairs)
    longest = max(later[0] - earlier[0] for earlier, later in pairs)
    # Before: one json.loads plus one synchronous mapping pass held the loop for about a second.
    assert busiest < 0.3, f"/healthz waited behind {busiest:.3f} s of loop work ({longest:.3f} s wall)"


async def test_errors_never_quote_credentials_of_the_url(made: list[JsonApiSource]) -> None:
    """A listing URL with user:password@ and a key in its query fails without either in the message."""

    async def broken(_request: web.Request) -> web.Response:
        return web.json_response({"error": "down"}, status=503)

    async with Server(broken) as server:
        url = server.url.replace("http://", "http://monitor:pw-5e1c9a@") + "/hoso?apikey=key-77ab"
        made.append(vendor := source(url, auth={"kind": "none"}, attempts=1))
        with pytest.raises(SyncError) as caught:
            await vendor.fetch(since=None)
    message = str(caught.value)
    assert message == f"vendor: {server.url}/hoso answered HTTP 503"
    assert "pw-5e1c9a" not in message and "key-77ab" not in message


async def test_login_token_is_scrubbed_from_logs(made: list[JsonApiSource]) -> None:
    """A session token a vendor issues at login is masked in every later log line, like configured secrets."""
    issued = "vendor-session-token-8d41c0"

    async def vendor_api(request: web.Request) -> web.Response:
        if request.path == "/login":
            return web.json_response({"access_token": issued})
        assert request.headers["Authorization"] == f"Bearer {issued}"
        return web.json_response({"data": [record(0)]})

    async with Server(vendor_api) as server:
        login = {"kind": "login", "url": server.url + "/login", "username": "u", "password": "p"}
        made.append(vendor := source(server.url + "/hoso", auth=login))
        batch = await vendor.fetch(since=None)
    assert len(batch.dossiers) == 1
    assert scrub_text(f"reply quoted {issued}") == "reply quoted [redacted]"
