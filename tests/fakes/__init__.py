"""Fake gateway servers that behave like the real APIs: real aiohttp servers on 127.0.0.1, port 0.

Each fake is a `FakeServer`: `base_url = await fake.start()`, `await fake.stop()` (also usable as
`async with Fake() as fake`), `fake.requests` (every request received, in order) and switches to make it
misbehave. `fake.script` queues scripted replies (HTTP status, headers, body) that the next requests get
before the fake's own handling: `fake.script.extend([ScriptedReply(500)] * 20)`. Each recorded request
also gets the status it was answered with and when (`status`, `replied_ns`); GET `/_fake/requests` returns
the log as JSON (monotonic times: comparable across processes on Linux). Run one standalone with
`python -m tests.fakes.esms --port 8081` (likewise zalo, speedsms, webhook) for end-to-end tests in
other processes.

Send endpoints that call `hold()` (eSMS, Zalo ZNS and OA) can be slowed down or held: `fake.delay`
(seconds each send waits before it is handled) and `fake.stalled` (a send waits, unanswered, until
`fake.release` is set; `stalled_requests` counts them and `stalling` is set at the first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Self

from aiohttp import web

__all__ = ["FakeServer", "RecordedRequest", "ScriptedReply", "run_standalone"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request a fake received; `received_ns` is time.monotonic_ns() on arrival, `replied_ns` when its
    reply (of HTTP `status`) was ready; both 0 until then."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_ns: int
    status: int = 0
    replied_ns: int = 0

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == lowered), None)


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """A reply a fake gives instead of its own handling, e.g. `ScriptedReply(429, {"Retry-After": "2"})`."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""

    def response(self) -> web.Response:
        return web.Response(status=self.status, headers=dict(self.headers), text=self.body)


class FakeServer:
    """Base of the fakes: an aiohttp app on 127.0.0.1 that records every request before handling it."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.script: deque[ScriptedReply] = deque()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.delay = 0.0
        self.stalled = False
        self.stalled_requests = 0
        self.stalling = asyncio.Event()
        self.release = asyncio.Event()

    # The request log as JSON, for a test or bench in another process (not itself recorded).
    LOG_PATH = "/_fake/requests"

    async def hold(self) -> None:
        """What a send endpoint does first: wait `delay`, then, while `stalled`, until `release` is set."""
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.stalled:
            self.stalled_requests += 1
            self.stalling.set()
            await self.release.wait()

    def routes(self, app: web.Application) -> None:
        raise TypeError(f"{type(self).__name__} must define routes")

    async def _log(self, request: web.Request) -> web.Response:
        start = int(request.query.get("from", "0"))
        return web.json_response(
            [
                {
                    "method": item.method,
                    "path": item.path,
                    "body": item.body.decode("utf-8", "replace"),
                    "received_ns": item.received_ns,
                    "status": item.status,
                    "replied_ns": item.replied_ns,
                }
                for item in self.requests[start:]
            ]
        )

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == self.LOG_PATH:
            return await handler(request)
        body = await request.read()
        index = len(self.requests)
        self.requests.append(
            RecordedRequest(request.method, request.path_qs, dict(request.headers), body, time.monotonic_ns())
        )
        response = self.script.popleft().response() if self.script else await handler(request)
        self.requests[index] = replace(
            self.requests[index], status=response.status, replied_ns=time.monotonic_ns()
        )
        return response

    async def start(self) -> str:
        app = web.Application(middlewares=[self._record])
        self.routes(app)
        app.router.add_get(self.LOG_PATH, self._log)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://{self.host}:{self.port}"
        return self.base_url

    async def stop(self) -> None:
        # Sends still held answer now: the server's cleanup would otherwise wait a minute for them.
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def run_standalone(fake_factory: Any, description: str) -> None:
    """`python -m tests.fakes.<name> --port N`: serve until interrupted, printing the base URL first."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def serve() -> None:
        fake = fake_factory(host=args.host, port=args.port)
        url = await fake.start()
        print(url, flush=True)
        banner = getattr(fake, "banner", None)
        if banner is not None:
            print(banner(), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fake.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
