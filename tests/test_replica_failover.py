"""Three replicas as real processes on one PostgreSQL, probing loopback portals and syncing the simulator:
`kill -9` of the member that owns a down target hands its targets (and its source, if it had it) to the
two others within 30 s, the target's incident continues with the same id, and /metrics summed over the
members counts every target and every figure of the shared tables once.

PostgreSQL only: replicas share work only there. Alerts are left out of this version (see the report of
the replicas branch: the outbox on PostgreSQL comes with the alerts branch).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from monitor.simulator import Simulator
from tests.crash_helpers import DaemonProcess, simulator_dossiers
from tests.store_engines import StoreFactory
from tests.test_replica_daemons import Portals

MEMBERS = 3
# Enough that the member syncing the source owns a target too (all 24 elsewhere: (2/3)^24, 6e-5).
TARGETS = 24
LEASE = 2.0
FAILOVER_LIMIT = 30.0


def _config(tmp_path: Path, stores: StoreFactory, portals: Portals, sim: Simulator) -> Path:
    targets = [
        {
            "name": f"t{index}",
            "type": "http",
            "url": f"http://127.0.0.1:{portals.port}/t{index}",
            "interval": "0.5s",
            "timeout": "0.5s",
            "failure_threshold": 1,
            "success_threshold": 1,
        }
        for index in range(TARGETS)
    ]
    config = {
        "timezone": "Asia/Ho_Chi_Minh",
        "logging": {"level": "info", "format": "json"},
        "listen": "127.0.0.1:0",
        "store": {**stores.config(tmp_path / "shared.db"), "flush_interval": "0.2s"},
        "replicas": {"lease": f"{LEASE}s"},
        "scheduler": {"start_jitter": 0, "shutdown_grace": "1s"},
        "targets": targets,
        "dossiers": simulator_dossiers(sim),
    }
    path = tmp_path / "replica.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, url
        return await response.text()


def _samples(text: str, name: str) -> list[tuple[str, float]]:
    """(labels, value) of every sample of one metric in exposition text."""
    found = []
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match:
            found.append((match.group(1) or "", float(match.group(2))))
    return found


def _total(text: str, name: str) -> float:
    return sum(value for _labels, value in _samples(text, name))


async def _scrape(members: list[DaemonProcess]) -> list[str]:
    return [await _get(member.base_url + "/metrics") for member in members]


async def _incidents(member: DaemonProcess, target: str) -> list[dict[str, Any]]:
    body = await _get(f"{member.base_url}/api/v1/incidents?since=1h&target={target}")
    return list(yaml.safe_load(body)["incidents"])


async def test_kill_9_of_the_owner_of_a_down_target_fails_over_within_30_s(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """Three members split 24 targets and a source; kill -9 of the down target's owner: the two others
    own everything within 30 s, the incident continues (same id, one incident), sums count once."""
    portals = Portals()
    await portals.start()
    members = [DaemonProcess(Path(), tmp_path / f"member-{index}.log") for index in range(MEMBERS)]
    try:
        async with Simulator(seed=7, dossier_count=150, tls=False, state_dir=tmp_path / "sim") as sim:
            config = _config(tmp_path, postgres_stores, portals, sim)
            for member in members:
                member.config = config
                await member.start(start_timeout=60)

            async def settled(group: list[DaemonProcess]) -> list[str] | None:
                scraped = await _scrape(group)
                live = all(_total(text, "tthc_replica_members") == len(group) for text in scraped)
                owned = sum(_total(text, "tthc_replica_owned_targets") for text in scraped)
                sources = sum(_total(text, "tthc_replica_owned_sources") for text in scraped)
                leaders = sum(_total(text, "tthc_replica_leader") for text in scraped)
                ok = live and owned == TARGETS and sources == 1 and leaders == 1
                return scraped if ok else None

            deadline = time.monotonic() + 60
            while (scraped := await settled(members)) is None:
                assert time.monotonic() < deadline, "the three members never settled"
                await asyncio.sleep(0.2)

            # Each target's series comes from its owner only.
            owners = {}
            for index in range(TARGETS):
                series = f'probe_success{{target="t{index}"}}'
                holders = [i for i, text in enumerate(scraped) if series in text]
                assert len(holders) == 1, (series, holders)
                owners[f"t{index}"] = holders[0]

            # A target of the member that syncs the source goes down; that member opens the incident.
            syncing = next(
                i for i, text in enumerate(scraped) if _total(text, "tthc_replica_owned_sources") == 1
            )
            victim = next(name for name, holder in sorted(owners.items()) if holder == syncing)
            portals.down.add(victim)
            owner = members[syncing]
            deadline = time.monotonic() + 20
            while not (opened := await _incidents(owner, victim)) or opened[0]["ended_at"] is not None:
                assert time.monotonic() < deadline, "the incident never opened"
                await asyncio.sleep(0.2)
            incident_id = opened[0]["id"]

            # The owner dies at once: no leave, no flush.
            killed = time.monotonic()
            await owner.kill()
            survivors = [member for member in members if member is not owner]
            while (after := await settled(survivors)) is None:
                assert time.monotonic() - killed < FAILOVER_LIMIT, "no failover within 30 s"
                await asyncio.sleep(0.1)
            failover = time.monotonic() - killed

            # The incident continues on its new owner: same id, open, no second one after it (a probe
            # timing out while three daemons start on a busy machine may have left an earlier one).
            deadline = time.monotonic() + FAILOVER_LIMIT
            while True:
                incidents = await _incidents(survivors[0], victim)
                since_down = [(i["id"], i["ended_at"]) for i in incidents if i["id"] >= incident_id]
                if since_down == [(incident_id, None)]:
                    break
                assert time.monotonic() < deadline, incidents
                await asyncio.sleep(0.2)
            after = await _scrape(survivors)
            holders = [i for i, text in enumerate(after) if f'probe_success{{target="{victim}"}}' in text]
            assert len(holders) == 1

            # The source's new owner syncs it: its success series comes from that survivor alone.
            synced = 'tthc_dossier_sync_last_success_timestamp_seconds{source="motcua"}'
            deadline = time.monotonic() + FAILOVER_LIMIT
            while sum(synced in text for text in after) != 1:
                assert time.monotonic() < deadline, "the source was not synced again"
                await asyncio.sleep(0.2)
                after = await _scrape(survivors)

            # Sums over members: open dossiers once (one owner of the source, equal to the store's
            # count), figures of the shared tables from the leader only.
            open_total = sum(_total(text, "tthc_dossiers_open") for text in after)
            leader = next(text for text in after if _total(text, "tthc_replica_leader") == 1)
            others = [text for text in after if text is not leader]
            assert all(not _samples(text, "tthc_dossiers_finished_total") for text in others)
            assert all(not _samples(text, "tthc_dossier_on_time_ratio") for text in others)
            rows = await postgres_stores_count(postgres_stores, tmp_path)
            assert open_total == rows, (open_total, rows)
            print(f"failover after {failover:.2f} s (lease {LEASE} s)")
    finally:
        for member in members:
            if member.process is not None:
                await member.kill()
        await portals.stop()


async def postgres_stores_count(stores: StoreFactory, tmp_path: Path) -> int:
    """Open and paused dossiers in the shared store, read through a store of our own."""
    store = stores.new(tmp_path / "shared.db")
    await store.open()
    try:
        rows = await store.reader.execute_fetchall(
            "SELECT count(*) FROM dossiers WHERE status IN ('open', 'paused')"
        )
        return int(rows[0][0])
    finally:
        await store.close()
