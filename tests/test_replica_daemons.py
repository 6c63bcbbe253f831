"""Two daemons in one process sharing one PostgreSQL store: they split the targets with none probed by
both, and when one dies without leaving, the other takes every target within the lease and continues
the open incident of a target that is down (same incident id, no second incident).

PostgreSQL only: on SQLite there is one process, which owns everything (tests/test_daemon.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from monitor.config import load_config_text
from monitor.daemon import Daemon
from tests.store_engines import StoreFactory

TARGETS = 20
INTERVAL = 0.5
# Two seconds: both daemons share one event loop here, so a stall of the loop silences both at once.
LEASE = 2.0


class Portals:
    """One loopback server standing for 20 portals (`/t0` .. `/t19`), counting the requests each gets."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.hits: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] += 1
        return web.Response(text="Cổng Dịch vụ công", status=500 if name in self.down else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def portals() -> AsyncIterator[Portals]:
    server = Portals()
    await server.start()
    yield server
    await server.stop()


def _config(stores: StoreFactory, path: Path, portals: Portals) -> str:
    store = {**stores.config(path), "flush_interval": "0.05s"}
    targets = [
        {
            "name": f"t{index}",
            "type": "http",
            "url": f"http://127.0.0.1:{portals.port}/t{index}",
            "interval": f"{INTERVAL}s",
            "timeout": f"{INTERVAL}s",
            "failure_threshold": 1,
            "success_threshold": 1,
        }
        for index in range(TARGETS)
    ]
    return yaml.safe_dump(
        {
            "listen": "127.0.0.1:0",
            "store": store,
            "replicas": {"lease": f"{LEASE}s"},
            "scheduler": {"start_jitter": 0, "shutdown_grace": "1s"},
            "targets": targets,
        }
    )


async def _until(condition: Callable[[], bool], within: float = 10.0) -> float:
    """Wait for `condition`; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, "condition not reached in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def _metrics(daemon: Daemon) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.base_url}/metrics") as response:
        return await response.text()


async def _get_json(daemon: Daemon, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(daemon.base_url + path) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def _value(text: str, series: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(series + " "))
    return float(line.split()[-1])


def _split(a: Daemon, b: Daemon) -> bool:
    mine, theirs = set(a.scheduler.targets), set(b.scheduler.targets)
    return bool(mine) and bool(theirs) and not mine & theirs and len(mine | theirs) == TARGETS


async def test_two_daemons_split_targets_and_one_takes_over_a_dead_ones_share(
    postgres_stores: StoreFactory, portals: Portals, tmp_path: Path
) -> None:
    """20 targets split between two daemons, each probed by one only (per the server's counts too);
    the member killed without leaving is replaced within lease + a heartbeat, and its DOWN target's
    incident continues on the survivor with the same id."""
    text = _config(postgres_stores, tmp_path / "shared.db", portals)
    first = Daemon(load_config_text(text, environ={}))
    second = Daemon(load_config_text(text, environ={}))
    await first.start()
    await second.start()
    started = time.monotonic()
    try:
        await _until(lambda: _split(first, second))
        # Every portal is hit at one daemon's pace, never two: 3 s at 0.5 s is 6 probes, not 12.
        await asyncio.sleep(0.5)
        portals.hits.clear()
        await asyncio.sleep(3.0)
        counts = [portals.hits[f"t{index}"] for index in range(TARGETS)]
        assert all(3 <= count <= 9 for count in counts), counts

        # Metrics: each target's series from its owner only; one leader; owned targets add up.
        scraped = [await _metrics(first), await _metrics(second)]
        for index in range(TARGETS):
            series = f'probe_success{{target="t{index}"}}'
            assert sum(series in text for text in scraped) == 1, series
        assert sum(_value(text, "tthc_replica_leader") for text in scraped) == 1
        assert sum(_value(text, "tthc_replica_owned_targets") for text in scraped) == TARGETS
        assert all(_value(text, "tthc_replica_members") == 2 for text in scraped)
        # The outbox is shared: its backlog gauges come from the leader only.
        leader = next(text for text in scraped if _value(text, "tthc_replica_leader") == 1)
        for text in scraped:
            ages = text.count("tthc_outbox_oldest_pending_age_seconds{")
            assert ages == (2 if text is leader else 0), ages

        # /api/v1 answers the same on both, for every target, whichever member probes it.
        async def same_targets() -> list[tuple[str, str]]:
            answers = [await _get_json(daemon, "/api/v1/targets") for daemon in (first, second)]
            views = [[(item["name"], item["health"]) for item in body["targets"]] for body in answers]
            return views[0] if views[0] == views[1] else []

        while (view := await same_targets()) != [(f"t{index}", "up") for index in range(TARGETS)]:
            assert time.monotonic() - started < 20, view
            await asyncio.sleep(0.1)

        # A target of the second daemon goes down and opens an incident there.
        victim = sorted(second.scheduler.targets)[0]
        portals.down.add(victim)
        await _until(lambda: second.scheduler.open_incident_id(victim) is not None)
        incident_id = second.scheduler.open_incident_id(victim)

        # The second daemon dies: no leave, no more heartbeats, no more probes.
        died = time.monotonic()
        await second.replica.stop(leave=False)
        await second.stop()
        await _until(lambda: len(first.scheduler.targets) == TARGETS)
        takeover = time.monotonic() - died
        # Lease, then at most one heartbeat (lease/3) to notice, with slack for a loaded machine.
        assert takeover < LEASE + LEASE / 3 + 1.0, takeover
        # Taken over, the incident is closed at the dead member's last probe, then continued (same id)
        # by the first probe here, which still fails; no other incident opens.
        open_ids: list[int] = []

        async def still_open() -> None:
            open_ids[:] = [i.id for i in await first.store.open_incidents() if i.target == victim]

        while open_ids != [incident_id]:
            assert time.monotonic() - died < 15, open_ids
            await asyncio.sleep(0.1)
            await still_open()
        incidents = await first.store.incidents(first.now() - timedelta(hours=1), target=victim)
        assert [incident.id for incident in incidents if incident.id >= (incident_id or 0)] == [incident_id]
        scraped_after = await _metrics(first)
        assert _value(scraped_after, "tthc_replica_members") == 1
        assert _value(scraped_after, "tthc_replica_owned_targets") == TARGETS
        assert _value(scraped_after, "tthc_replica_leader") == 1
        print(f"takeover after {takeover:.2f} s (lease {LEASE} s)")
    finally:
        await first.stop()
        await second.stop()


async def test_a_reload_shares_out_new_targets_and_drops_removed_ones(
    postgres_stores: StoreFactory, portals: Portals, tmp_path: Path
) -> None:
    """Both members reload a file with five targets removed and five added: every configured target is
    probed by exactly one member, the removed ones by neither."""
    path = tmp_path / "replica.yaml"
    path.write_text(_config(postgres_stores, tmp_path / "shared.db", portals), encoding="utf-8")
    first = Daemon(load_config_text(path.read_text(encoding="utf-8"), environ={}), config_path=path)
    second = Daemon(load_config_text(path.read_text(encoding="utf-8"), environ={}), config_path=path)
    await first.start()
    await second.start()
    try:
        await _until(lambda: _split(first, second))
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        renamed = [{**target, "name": f"n{index}"} for index, target in enumerate(data["targets"][:5])]
        data["targets"] = data["targets"][5:] + renamed
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        assert (await first.reload()).ok and (await second.reload()).ok
        wanted = {target["name"] for target in data["targets"]}
        mine, theirs = set(first.scheduler.targets), set(second.scheduler.targets)
        assert not mine & theirs and mine | theirs == wanted
    finally:
        await first.stop()
        await second.stop()


async def test_a_member_leaving_while_another_starts_is_followed_once_it_has_started(
    postgres_stores: StoreFactory, portals: Portals, tmp_path: Path
) -> None:
    """The first member leaves while the second is still starting (after its join, before its probes):
    the second ends up probing every target, not the half it owned when it joined."""
    text = _config(postgres_stores, tmp_path / "shared.db", portals)
    first = Daemon(load_config_text(text, environ={}))
    second = Daemon(load_config_text(text, environ={}))
    await first.start()
    scheduler_start = second.scheduler.start

    async def start_while_the_first_leaves(*args: Any, **kwargs: Any) -> None:
        # The second has joined and computed its half; the first leaves before the second's probes start.
        assert len(second.replica.members) == 2
        await first.stop()
        await _until(lambda: len(second.replica.members) == 1)
        await scheduler_start(*args, **kwargs)

    second.scheduler.start = start_while_the_first_leaves  # type: ignore[method-assign]
    try:
        await second.start()
        took = await _until(lambda: len(second.scheduler.targets) == TARGETS, within=LEASE)
        print(f"the leave seen during the start followed {took:.2f} s after it")
    finally:
        await first.stop()
        await second.stop()
