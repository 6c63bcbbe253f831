"""`tthc-monitor demo` as a user runs it: a subprocess, its printed URLs, a fault switched on.

SQLite only: the demo always keeps its embedded store under `--data` (a first look needs no server)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

DEMO_TIMEOUT = 60.0


async def _read_urls(process: asyncio.subprocess.Process) -> dict[str, str]:
    urls: dict[str, str] = {}
    assert process.stdout is not None
    while "fault switch" not in urls:
        line = (await asyncio.wait_for(process.stdout.readline(), DEMO_TIMEOUT)).decode()
        assert line, "demo exited before printing its URLs"
        match = re.match(r"\s+([A-Za-z ]+):\s+(http\S+)", line)
        if match:
            urls[match.group(1).strip()] = match.group(2)
    return urls


async def _poll(session: aiohttp.ClientSession, url: str, predicate, what: str) -> dict:
    deadline = asyncio.get_running_loop().time() + DEMO_TIMEOUT
    while True:
        async with session.get(url) as response:
            body = await response.json()
        if predicate(body):
            return body
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}: {body}"
        await asyncio.sleep(0.5)


def _healths(body: dict) -> dict[str, str]:
    return {item["name"]: item["health"] for item in body["targets"]}


async def test_demo_detects_a_fault_and_opens_an_incident(tmp_path: Path) -> None:
    """The demo's targets come UP; switching the simulator down makes them DOWN with an incident."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--data",
        str(tmp_path / "data"),
        "--sim-port",
        "0",
        "--sim-admin-port",
        "0",
        "--sim-tls-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        urls = await _read_urls(process)
        api = urls["API"]
        base = api.removesuffix("/api/v1/targets")
        async with aiohttp.ClientSession() as session:
            await _poll(session, api, lambda body: set(_healths(body).values()) == {"up"}, "all targets UP")
            async with session.post(urls["fault switch"], json={"fault": "down", "scope": "all"}) as response:
                assert response.status in (200, 201)
            body = await _poll(session, api, lambda body: _healths(body)["portal"] == "down", "portal DOWN")
            assert next(item for item in body["targets"] if item["name"] == "portal")["reason"] == "refused"
            incidents = await _poll(
                session,
                f"{base}/api/v1/incidents?since=1h",
                lambda body: any(item["target"] == "portal" and item["open"] for item in body["incidents"]),
                "an open incident for portal",
            )
            assert all(item["reason"] for item in incidents["incidents"])
    finally:
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    assert (tmp_path / "data" / "tthc-monitor-demo.db").exists()
