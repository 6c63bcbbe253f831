"""Headless Chromium driven over the DevTools protocol (a small websocket client): load a page, read the
rendered DOM, record every request the page made, take screenshots, print to PDF.

Tests skip, saying why, only when no Chromium is installed (CI installs Debian's `chromium`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

__all__ = ["ARTIFACTS", "Browser", "Page", "chromium_path", "open_browser"]

# Screenshots and PDFs a human looks at after a run (git-ignored).
ARTIFACTS = Path(__file__).parent / "artifacts"

# Without the background-networking flags Chromium reaches out to Google hosts on its own.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _save(path: Path, encoded: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(encoded))
    return path


class Page:
    """One tab: an attached DevTools session, with every request it made recorded."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id
        self.requests: list[str] = []
        self._loaded = asyncio.Event()

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, session_id=self.session_id)

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def goto(self, url: str, *, width: int, height: int, mobile: bool, headers: dict[str, str]) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile},
        )
        if headers:
            await self.send("Network.setExtraHTTPHeaders", {"headers": headers})
        self._loaded.clear()
        result = await self.send("Page.navigate", {"url": url})
        assert "errorText" not in result, f"navigation to {url} failed: {result}"
        await asyncio.wait_for(self._loaded.wait(), 20)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> Path:
        """The whole page, not only the viewport."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        data = await self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            },
        )
        return _save(path, data["data"])

    async def print_pdf(self, path: Path) -> Path:
        """Print as the browser's print dialog would, honouring the page's own `@page` size."""
        data = await self.send("Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True})
        return _save(path, data["data"])

    def foreign_requests(self, allowed_host: str = "127.0.0.1") -> list[str]:
        """Requests to any host but `allowed_host` (data: and about: URLs load nothing from a network)."""
        foreign = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "about"):
                continue
            if parts.scheme == "file" or parts.hostname != allowed_host:
                foreign.append(url)
        return foreign


class Browser:
    """A headless Chromium process and its browser-level DevTools websocket."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._profile = tempfile.TemporaryDirectory(prefix="tthc-chromium-")

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            self.executable,
            *_FLAGS,
            f"--user-data-dir={self._profile.name}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._process.stderr is not None
        url = None
        async with asyncio.timeout(30):
            while url is None:
                line = (await self._process.stderr.readline()).decode(errors="replace")
                assert line, "chromium exited before opening its DevTools port"
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                url = match.group(1) if match else None
        # Keep draining stderr so Chromium never blocks on a full pipe.
        self._stderr_task = asyncio.create_task(self._drain(self._process.stderr))
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            payload = json.loads(message.data)
            if "id" in payload:
                future = self._pending.pop(payload["id"], None)
                if future is not None and not future.done():
                    future.set_result(payload)
            elif "sessionId" in payload and payload["sessionId"] in self._pages:
                self._pages[payload["sessionId"]].on_event(payload["method"], payload.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("chromium closed the DevTools connection"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None
    ) -> dict[str, Any]:
        assert self._ws is not None
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, 60)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply["result"]

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self._pages[page.session_id] = page
        for domain in ("Page", "Network", "Runtime"):
            await page.send(f"{domain}.enable")
        return page

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send("Browser.close"), 5)
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        if self._http is not None:
            await self._http.close()
        if self._process is not None:
            if self._process.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._process.wait(), 10)
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
            await asyncio.wait_for(self._stderr_task, 5)
        self._profile.cleanup()


@contextlib.asynccontextmanager
async def open_browser(executable: str) -> AsyncIterator[Browser]:
    browser = Browser(executable)
    try:
        await browser.start()
        yield browser
    finally:
        await browser.close()
