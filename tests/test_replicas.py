"""Replicas sharing one store: rendezvous ownership, membership heartbeats and leases, leader election.

Membership runs on both engines (several in-process members on one SQLite file or one PostgreSQL
schema, lease 1 s); leader election and eviction need PostgreSQL's advisory locks and server-side
disconnects, so those tests are PostgreSQL-only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from monitor.replicas.config import ReplicasConfig
from monitor.replicas.keepalive import KeepAlive
from monitor.replicas.leader import PostgresLeadership, SoleLeadership
from monitor.replicas.membership import Membership, new_member_id
from monitor.replicas.node import Replica
from monitor.replicas.rendezvous import assign, owned, weight
from monitor.store import SqlStore
from tests.store_engines import StoreFactory
from tests.tcp_proxy import CuttableProxy

LEASE = timedelta(seconds=1)
KEYS = [f"target-{index}" for index in range(10_000)]


def test_rendezvous_shares_keys_in_bounded_thirds() -> None:
    """10,000 keys over 3 members: each owns floor or ceil of a third, and every key has one owner."""
    members = ["replica-a", "replica-b", "replica-c"]
    owners = assign(KEYS, members)
    assert set(owners) == set(KEYS)
    shares = Counter(owners.values())
    assert sorted(shares.values()) == [3333, 3333, 3334], shares


def test_rendezvous_splits_a_handful_of_sources_evenly_whatever_the_member_ids() -> None:
    """10 sources over 3 members split 4/3/3 for any member ids (plain rendezvous gave 1/8/1 once)."""
    sources = [f"source:s{index}" for index in range(10)]
    for trial in range(50):
        members = [f"host-{trial}-{index}" for index in range(3)]
        assert sorted(Counter(assign(sources, members).values()).values()) == [3, 3, 4]
    assert Counter(assign(sources[:2], ["a", "b", "c"]).values()).most_common(1)[0][1] == 1


def test_rendezvous_moves_few_keys_besides_those_of_a_member_that_leaves_or_joins() -> None:
    """A member leaving moves its own keys and at most 2 % of the others'; one joining takes a quarter."""
    three = ["replica-a", "replica-b", "replica-c"]
    before = assign(KEYS, three)
    after = assign(KEYS, ["replica-a", "replica-c"])
    moved = {key for key in KEYS if before[key] != after[key]}
    assert {key for key in KEYS if before[key] == "replica-b"} <= moved
    assert len({key for key in moved if before[key] != "replica-b"}) < 0.02 * len(KEYS)
    four = assign(KEYS, [*three, "replica-d"])
    taken = sum(1 for key in KEYS if four[key] == "replica-d")
    assert taken == 2500
    assert sum(1 for key in KEYS if four[key] not in (before[key], "replica-d")) < 0.02 * len(KEYS)


def test_rendezvous_is_the_same_in_every_process_and_any_order() -> None:
    """Weights do not depend on Python's salted hash: another process with another seed agrees."""
    members = ["replica-a", "replica-b", "replica-c"]
    here = assign(KEYS[:200], members)
    assert here == assign(list(reversed(KEYS[:200])), list(reversed(members)))
    assert owned(KEYS[:200], members, "replica-a") == {k for k, o in here.items() if o == "replica-a"}
    assert owned(KEYS[:200], members, "gone") == set()
    assert assign(["x"], []) == {}
    code = (
        "from monitor.replicas.rendezvous import weight, assign;"
        "print(weight('replica-a', 'portal'));"
        f"o = assign([f'target-{{i}}' for i in range(200)], {members!r});"
        "print(','.join(o[f'target-{i}'] for i in range(200)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    first, second = out.stdout.split()
    assert int(first) == weight("replica-a", "portal")
    assert second.split(",") == [here[key] for key in KEYS[:200]]


async def _open(stores: StoreFactory, path: Path, count: int) -> list[SqlStore]:
    opened = []
    for _ in range(count):
        store = stores.new(path, flush_interval=0.05)
        await store.open()
        opened.append(store)
    return opened


async def test_membership_join_heartbeat_expiry_and_leave(stores: StoreFactory, tmp_path: Path) -> None:
    """Three members on one store see each other; one that leaves is gone at once, one that stops
    beating is gone after its lease and back with its next heartbeat."""
    opened = await _open(stores, tmp_path / "shared.db", 3)
    try:
        a, b, c = (
            Membership(store, new_member_id(name), LEASE) for store, name in zip(opened, "abc", strict=True)
        )
        await a.join()
        await b.join()
        everyone = await c.join()
        assert everyone == tuple(sorted((a.id, b.id, c.id)))
        assert await a.beat() == everyone
        assert [member.id for member in await b.members()] == [a.id, b.id, c.id]

        await c.leave()
        assert await a.beat() == tuple(sorted((a.id, b.id)))
        # b stays silent past its lease while a keeps beating.
        for _ in range(6):
            await asyncio.sleep(LEASE.total_seconds() / 4)
            live = await a.beat()
        assert live == (a.id,)
        # b's next heartbeat brings it back; c, who left, beats its way back in as a new join.
        assert await b.beat() == tuple(sorted((a.id, b.id)))
        assert await c.beat() == tuple(sorted((a.id, b.id, c.id)))
    finally:
        for store in opened:
            await store.close()


async def test_replica_loop_follows_members_and_notifies_changes(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Two running replicas split 100 keys with no overlap; after one stops cleanly the other owns all,
    and its listener was told."""
    opened = await _open(stores, tmp_path / "shared.db", 2)
    config = ReplicasConfig(lease=LEASE)
    replicas = [Replica(store, config, _leadership(stores, tmp_path / "shared.db")) for store in opened]
    changes: list[tuple[str, ...]] = []
    first, second = replicas

    async def changed() -> None:
        changes.append(first.members)

    first.on_change(changed)
    try:
        await first.start()
        await second.start()
        keys = [f"t{index}" for index in range(100)]
        await _eventually(lambda: len(first.members) == 2 and len(second.members) == 2)
        mine, theirs = first.owned(keys), second.owned(keys)
        assert mine.isdisjoint(theirs) and mine | theirs == set(keys) and mine and theirs
        # Exactly one leader (on SQLite both are the sole process's: each leads its own file).
        if stores.postgres:
            assert first.is_leader != second.is_leader
        await second.stop()
        await _eventually(lambda: first.members == (first.id,))
        assert first.owned(keys) == set(keys)
        assert changes[-1] == (first.id,)
        if stores.postgres:
            await _eventually(lambda: first.is_leader)
    finally:
        for replica in replicas:
            await replica.stop()
        for store in opened:
            await store.close()


async def test_replicas_started_together_see_each_other_before_taking_work(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Two members started a moment apart with replicas.join_wait: when start() returns, each already
    counts both, so neither takes the other's share first."""
    opened = await _open(stores, tmp_path / "shared.db", 2)
    config = ReplicasConfig(lease=LEASE, join_wait=LEASE / 2)
    replicas = [Replica(store, config, _leadership(stores, tmp_path / "shared.db")) for store in opened]
    first, second = replicas
    seen: dict[str, tuple[str, ...]] = {}

    async def start(replica: Replica, delay: float) -> None:
        await asyncio.sleep(delay)
        await replica.start()
        seen[replica.id] = replica.members

    try:
        began = time.monotonic()
        await asyncio.gather(start(first, 0), start(second, first.interval / 3))
        assert seen[first.id] == seen[second.id] == tuple(sorted((first.id, second.id)))
        assert time.monotonic() - began >= first.join_wait == LEASE.total_seconds() / 2
        keys = [f"source:s{index}" for index in range(10)]
        assert sorted(len(replica.owned(keys)) for replica in replicas) == [5, 5]
    finally:
        for replica in replicas:
            await replica.stop()
        for store in opened:
            await store.close()


async def test_leader_moves_when_the_leaders_connection_closes(stores: StoreFactory, tmp_path: Path) -> None:
    """PostgreSQL only (advisory locks): one leader; its connection dropped by the server, the other
    member takes the lock at its next check; a released lock is taken at once."""
    if not stores.postgres:
        return
    path = tmp_path / "shared.db"
    (store,) = await _open(stores, path, 1)
    a = PostgresLeadership(stores.url or "", schema=stores.schema(path), member_id="a")
    b = PostgresLeadership(stores.url or "", schema=stores.schema(path), member_id="b")
    try:
        assert await a.check() is True
        assert await b.check() is False
        assert await a.check() is True
        assert a.connection is not None
        await _terminate(stores.url or "", a.connection.raw.info.backend_pid)
        assert await b.check() is True
        # a notices at its next check that its session (and lock) is gone, and cannot take it back.
        assert await a.check() is False
        assert await a.check() is False
        await b.release()
        assert b.is_leader is False
        assert await a.check() is True
    finally:
        await a.release()
        await b.release()
        await store.close()


async def test_a_replica_cut_off_from_the_database_past_its_lease_owns_nothing(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """PostgreSQL only (a network partition in front of the server): heartbeats hanging for longer than
    the lease make the member give up its share and its leadership; the server ends its silent session,
    so the member still connected takes everything and leads; mended, the member rejoins."""
    if not stores.postgres:
        return
    path = tmp_path / "shared.db"
    opened = await _open(stores, path, 2)
    url = stores.url or ""
    info = conninfo_to_dict(url)
    proxy = CuttableProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    await proxy.start()
    proxied = make_conninfo(url, host="127.0.0.1", port=str(proxy.port))
    config = ReplicasConfig(lease=LEASE)
    cut = Replica(opened[0], config, PostgresLeadership(proxied, schema=stores.schema(path), lease=LEASE))
    kept = Replica(opened[1], config, PostgresLeadership(url, schema=stores.schema(path), lease=LEASE))
    try:
        await cut.start()
        await kept.start()
        await _eventually(lambda: len(cut.members) == 2 and len(kept.members) == 2 and cut.is_leader)
        proxy.cut()
        await _eventually(lambda: cut.evicted, within=LEASE.total_seconds() * 3)
        assert cut.members == () and not cut.is_leader and cut.owned(["a", "b", "c"]) == set()
        await _eventually(
            lambda: kept.members == (kept.id,) and kept.is_leader, within=LEASE.total_seconds() * 5
        )
        assert kept.owned(["a", "b", "c"]) == {"a", "b", "c"}
        proxy.mend()
        await _eventually(
            lambda: not cut.evicted and len(kept.members) == 2, within=LEASE.total_seconds() * 5
        )
        assert cut.is_leader is False and kept.is_leader is True
    finally:
        proxy.mend()
        await cut.stop(leave=False)
        await kept.stop()
        await proxy.stop()
        for store in opened:
            await store.close()


def _leadership(stores: StoreFactory, path: Path) -> PostgresLeadership | SoleLeadership:
    if stores.postgres:
        return PostgresLeadership(stores.url or "", schema=stores.schema(path))
    return SoleLeadership()


async def _terminate(url: str, pid: int) -> None:
    """End one server session (as a network cut or a killed server process would) and wait until it is
    gone: pg_terminate_backend only signals it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(100):
            cursor = await admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            row = await cursor.fetchone()
            if row is not None and row[0] == 0:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"session {pid} still there")


async def _eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def _stale_members(stores: StoreFactory, path: Path) -> set[str]:
    """Members whose last heartbeat is older than their lease, by the database's clock, read from outside."""
    rows = stores.query(
        path,
        "SELECT id FROM replica_members WHERE left_at IS NULL"
        " AND last_seen_at + lease_ms <= (extract(epoch from clock_timestamp())*1000)::bigint",
    )
    return {row[0] for row in rows}


def _hold_the_loop(seconds: float) -> None:
    """Keep the event loop from running anything, as CPU-bound work on it would (on purpose: blocking)."""
    time.sleep(seconds)


def _kept_alive(stores: StoreFactory, path: Path, store: SqlStore, stall_limit: float) -> Replica:
    member_id = new_member_id("busy")
    keepalive = KeepAlive(
        stores.url or "",
        schema=stores.schema(path),
        member_id=member_id,
        interval=LEASE.total_seconds() / 3,
        stall_limit=stall_limit,
    )
    leadership = PostgresLeadership(
        stores.url or "", schema=stores.schema(path), member_id=member_id, lease=LEASE
    )
    return Replica(store, ReplicasConfig(lease=LEASE), leadership, member_id=member_id, keepalive=keepalive)


async def test_a_busy_event_loop_keeps_its_share_through_the_keepalive_thread(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """A member whose event loop is held for three leases (a long first sync) stays live in the database
    through its keepalive thread, and does not count itself evicted when the loop runs again."""
    path = tmp_path / "shared.db"
    [store] = await _open(postgres_stores, path, 1)
    busy = _kept_alive(postgres_stores, path, store, stall_limit=60.0)
    try:
        await busy.start()
        _hold_the_loop(3 * LEASE.total_seconds())
        assert _stale_members(postgres_stores, path) == set()
        assert busy.keepalive is not None and busy.keepalive.beats >= 2
        await busy.tick()
        assert not busy.evicted and busy.members == (busy.id,)
    finally:
        await busy.stop()
        await store.close()


async def test_a_loop_stalled_past_the_grace_period_loses_its_share(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """The keepalive thread covers a busy loop only for `stall_limit`: past it the member's row goes stale
    as a dead member's does, and the member counts itself evicted when its loop runs again."""
    path = tmp_path / "shared.db"
    [store] = await _open(postgres_stores, path, 1)
    wedged = _kept_alive(postgres_stores, path, store, stall_limit=1.2)
    try:
        await wedged.start()
        _hold_the_loop(4 * LEASE.total_seconds())
        assert _stale_members(postgres_stores, path) == {wedged.id}
        await wedged._check_eviction()
        assert wedged.evicted and wedged.members == ()
    finally:
        await wedged.stop()
        await store.close()
