"""The scheduler's incident writes stay bounded while the store is locked: a target whose outage waits to
be written is not probed again until it is, and every incident reaches the store once the lock ends.
SQLite only (another process holds the file's write lock); PostgreSQL's outage is in
tests/test_store_outage_postgres.py."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from monitor.config import load_config_text
from monitor.daemon import Daemon
from monitor.incident_writer import MAX_PENDING_INCIDENT_WRITES
from tests.outage_helpers import WRITE_LOCKER, Portal


async def test_a_flapping_target_under_a_locked_store_keeps_the_incident_queue_bounded(
    tmp_path: Path,
) -> None:
    """Flaps during a 3 s lock queue at most one outage per target; probes wait, then all is committed."""
    portal = Portal()
    await portal.start()
    store_path = tmp_path / "store.db"
    config = load_config_text(
        f"""
listen: 127.0.0.1:0
store: {{path: {store_path}, flush_interval: 0.05s, busy_timeout: 0.1s}}
scheduler: {{start_jitter: 0, shutdown_grace: 5s}}
logging: {{format: json}}
targets:
  - {{name: portal, type: http, url: "{portal.url}", interval: 0.05s, timeout: 0.05s,
     failure_threshold: 1, success_threshold: 1}}
""",
        environ={},
    )
    daemon = Daemon(config)
    await daemon.start()
    locker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITE_LOCKER,
        str(store_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert locker.stdout is not None and locker.stdin is not None
        assert await asyncio.wait_for(locker.stdout.readline(), 10) == b"locked\n"
        deepest = 0
        loop = asyncio.get_running_loop()
        flaps_until = loop.time() + 3.0
        while loop.time() < flaps_until:
            portal.status = 503 if portal.status == 200 else 200
            for _ in range(6):
                deepest = max(deepest, daemon.scheduler.incidents.waiting)
                await asyncio.sleep(0.05)
        portal.status = 200
        held_back = daemon.metrics.probes_held_back._value.get()
        locker.stdin.close()
        assert await asyncio.wait_for(locker.wait(), 10) == 0
        assert deepest <= MAX_PENDING_INCIDENT_WRITES == 2, deepest
        assert held_back > 0, "probes waited while the outage's writes were pending"
        for _ in range(200):
            await asyncio.sleep(0.05)
            incidents = await daemon.store.incidents(daemon.now() - timedelta(hours=1), target="portal")
            if incidents and all(item.ended_at is not None for item in incidents):
                break
        assert incidents and all(item.ended_at is not None for item in incidents), incidents
        assert daemon.scheduler.open_incident_id("portal") is None
    finally:
        if locker.returncode is None:
            locker.kill()
            await locker.wait()
        await daemon.stop()
        await portal.stop()
