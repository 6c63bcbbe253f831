"""Start and stop the daemon many times on one store: no exception and no thread left behind.

Stopping used to raise `cannot start a transaction within a transaction` from the store's closing flush
about once in 125 cycles (a flush cancelled while its BEGIN was still running), and aiosqlite's threads
outlived the daemon, which kept test runs from exiting. On both engines; on PostgreSQL fewer cycles (each
opens real connections to the server), still enough to land stop() in every place.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from monitor.config import load_config_text
from monitor.daemon import Daemon
from tests.store_engines import StoreFactory

CYCLES = 300
POSTGRES_CYCLES = 60


async def _portal(_request: web.Request) -> web.Response:
    return web.Response(text="Cổng Dịch vụ công")


@pytest.fixture
async def backend_port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/", _portal)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_three_hundred_start_stop_cycles_are_clean(
    tmp_path: Path, backend_port: int, stores: StoreFactory
) -> None:
    """300 start/stop cycles (60 on PostgreSQL) with probes running and the uptime refresh mid-flush: stop()
    never raises and every thread the daemon started (aiosqlite's included) is gone after each stop."""
    cycles = POSTGRES_CYCLES if stores.postgres else CYCLES
    store = json.dumps({**stores.config(tmp_path / "store.db"), "flush_interval": "0.01s"})
    config = load_config_text(
        f"""
listen: 127.0.0.1:0
store: {store}
scheduler: {{start_jitter: 0, shutdown_grace: 1s}}
logging: {{format: json, level: warning}}
targets:
  - {{name: portal, type: tcp, host: 127.0.0.1, port: {backend_port}, interval: 0.05s, timeout: 0.05s}}
""",
        environ={},
    )
    before = set(threading.enumerate())
    began = time.perf_counter()
    for cycle in range(cycles):
        daemon = Daemon(config)
        await daemon.start()
        # Vary how far the daemon gets, so stop() lands in different places (probe, flush, refresh).
        await asyncio.sleep((cycle % 5) * 0.004)
        await daemon.stop()
        leftover = [thread.name for thread in set(threading.enumerate()) - before]
        assert not leftover, f"cycle {cycle}: threads outlived the daemon: {leftover}"
    elapsed = time.perf_counter() - began
    print(f"{cycles} start/stop cycles in {elapsed:.1f} s ({stores.engine})")
