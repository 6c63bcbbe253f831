"""This daemon as a replica: it joins, heartbeats every lease/3, follows who is live and who leads, and
tells the daemon when what it owns may have changed.

Ownership follows the live member list (rendezvous.py), recomputed by the daemon whenever it changes (a
member joins, leaves or stays silent past its lease) or leadership moves. A member whose own heartbeat
has failed for longer than its lease assumes the others have evicted it: it owns nothing and leads
nothing until a heartbeat succeeds again, so two members never both keep a target for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

import structlog

from monitor.replicas.config import ReplicasConfig
from monitor.replicas.keepalive import KeepAlive
from monitor.replicas.leader import Leadership, PostgresLeadership
from monitor.replicas.membership import Membership, new_member_id
from monitor.replicas.rendezvous import owned
from monitor.store.engine import DB_ERRORS, SQLITE
from monitor.store.postgres import PostgresEngine
from monitor.store.sql import SqlStore
from monitor.supervisor import Supervisor

__all__ = ["Listener", "Replica", "ReplicaView", "SoloReplica", "replica_for"]

log = structlog.get_logger("monitor.replicas")

# How long a busy event loop is covered by the keepalive thread's heartbeats (keepalive.py): six leases,
# at least a minute (a first sync of 100,000 dossiers on a starved core), after which a member whose loop
# shows no life loses its share like a dead one.
KEEPALIVE_LEASES = 6
KEEPALIVE_MIN_SECONDS = 60.0

# Heartbeats hung on an unreachable server at once, at most (each holds a connection until it ends).
_MAX_STUCK = 3

# Called when ownership or leadership may have changed; the daemon recomputes what it runs.
Listener = Callable[[], Awaitable[None]]


class ReplicaView(Protocol):
    """What the daemon, metrics and the API read of this member."""

    id: str
    engine: str

    @property
    def members(self) -> tuple[str, ...]: ...

    @property
    def is_leader(self) -> bool: ...

    def owned(self, keys: Iterable[str]) -> set[str]: ...

    def on_change(self, listener: Listener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self, *, leave: bool = True) -> None: ...


class SoloReplica:
    """SQLite: the one process is the only member, owns everything and leads; nothing runs."""

    engine = SQLITE
    is_leader = True

    def __init__(self, name: str | None = None) -> None:
        self.id = new_member_id(name)
        self.members = (self.id,)

    def owned(self, keys: Iterable[str]) -> set[str]:
        return set(keys)

    def on_change(self, listener: Listener) -> None:
        return None  # nothing ever changes

    async def start(self) -> None:
        return None

    async def stop(self, *, leave: bool = True) -> None:
        return None


class Replica:
    """Membership, leadership and ownership of one daemon sharing a PostgreSQL store."""

    def __init__(
        self,
        store: SqlStore,
        config: ReplicasConfig,
        leadership: Leadership,
        *,
        supervisor: Supervisor | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        member_id: str | None = None,
        keepalive: KeepAlive | None = None,
        join_wait: float | None = None,
    ) -> None:
        self.id = member_id or new_member_id(config.name)
        # Beats from a thread while the loop is busy past its heartbeat (keepalive.py).
        self.keepalive = keepalive
        self.engine = store.dialect
        self.lease = config.lease
        # A third of the lease: two heartbeats can fail before the others count this member out.
        self.interval = config.lease.total_seconds() / 3
        self.join_wait = config.join_wait.total_seconds() if join_wait is None else join_wait
        session = leadership.session if isinstance(leadership, PostgresLeadership) else None
        self.membership = Membership(store, self.id, config.lease, clock=clock, session=session)
        self.leadership = leadership
        self._supervisor = supervisor or Supervisor()
        self._members: tuple[str, ...] = ()
        self._leading = False
        self._listeners: list[Listener] = []
        self._last_beat: float | None = None
        self.evicted = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        # Heartbeats abandoned while hung on an unreachable server (kept referenced until they end).
        self._stuck: set[asyncio.Future[tuple[str, ...]]] = set()

    @property
    def members(self) -> tuple[str, ...]:
        """The live members' ids, sorted; empty while this member believes itself evicted."""
        return self._members

    @property
    def is_leader(self) -> bool:
        return self._leading

    def owned(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` this member owns: its bounded share of them (rendezvous.py), so pass all the
        keys of one kind at once (every target, or every source), never one by one."""
        return owned(keys, self._members, self.id)

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        """Join (a failure here fails the start: a replica that cannot reach the store cannot share)."""
        members = await self.membership.join()
        self._last_beat = asyncio.get_running_loop().time()
        # replicas.join_wait: members started together see each other before any takes work; heartbeats
        # go on meanwhile, so the wait never costs this member its lease.
        waited_until = asyncio.get_running_loop().time() + self.join_wait
        while (left := waited_until - asyncio.get_running_loop().time()) > 0:
            await asyncio.sleep(min(left, self.interval))
            members = await self.membership.beat()
            self._last_beat = asyncio.get_running_loop().time()
        await self.leadership.check()
        await self._apply(members, self.leadership.is_leader)
        log.info("replica_joined", member=self.id, members=len(members), leader=self._leading)
        self._task = self._supervisor.spawn("replica-heartbeat", self._run)
        if self.keepalive is not None:
            self.keepalive.start()

    async def stop(self, *, leave: bool = True) -> None:
        """Stop heartbeating; with `leave` (a clean stop) tell the others at once. Once only: a member
        abandoned without leaving (tests of a crash) does not leave when its daemon stops later."""
        if self._stopped:
            return
        self._stopped = True
        if self.keepalive is not None:
            # First: a member that stops must fall silent, or the others would wait for its lease.
            await self.keepalive.stop()
        task, self._task = self._task, None
        stuck, self._stuck = list(self._stuck), set()
        for pending in [task, *stuck]:
            if pending is not None:
                pending.cancel()
        await asyncio.gather(
            *(pending for pending in [task, *stuck] if pending is not None), return_exceptions=True
        )
        # Bounded: a server that does not answer must not hold the daemon's stop. A member that never
        # joined (its daemon's start failed first) has nothing to leave, and no connection to wait for.
        if leave and self._last_beat is not None:
            try:
                async with asyncio.timeout(self.lease.total_seconds()):
                    await self.membership.leave()
                log.info("replica_left", member=self.id)
            except (TimeoutError, *DB_ERRORS) as exc:
                # The others see the lease run out instead.
                log.warning("replica_leave_failed", member=self.id, error=type(exc).__name__)
        try:
            async with asyncio.timeout(self.interval):
                await self.leadership.release()
        except TimeoutError:
            await self.leadership.abandon()
        self._members, self._leading = (), False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.tick()

    async def tick(self) -> None:
        """One heartbeat: write it, re-check leadership, apply the live member list."""
        if len(self._stuck) >= _MAX_STUCK:
            # The server is unreachable and its connections hang: wait for one to end before another.
            await self._check_eviction()
            return
        beat = asyncio.ensure_future(self.membership.beat())
        try:
            # A heartbeat stuck on an unreachable server must not hide that the lease ran out meanwhile.
            while not beat.done():
                await asyncio.wait([beat], timeout=self.interval)
                if beat.done():
                    break
                await self._check_eviction()
                if self.evicted:
                    # Left to end on its own (its connection is closed): the next tick connects afresh.
                    self._stuck.add(beat)
                    beat.add_done_callback(self._forget)
                    return
        except asyncio.CancelledError:
            beat.cancel()
            raise
        try:
            members = beat.result()
        except DB_ERRORS as exc:
            log.warning("replica_heartbeat_failed", member=self.id, error=type(exc).__name__)
            await self._check_eviction()
            return
        self._last_beat = asyncio.get_running_loop().time()
        if self.keepalive is not None:
            self.keepalive.loop_beat()
        if self.evicted:
            self.evicted = False
            log.warning("replica_rejoined", member=self.id)
        leading = await self.leadership.check()
        await self._apply(members, leading)

    def _forget(self, beat: asyncio.Future[tuple[str, ...]]) -> None:
        self._stuck.discard(beat)
        if not beat.cancelled():
            beat.exception()  # retrieved: it failed long ago and was reported as an eviction

    async def _check_eviction(self) -> None:
        if self.evicted or self._last_beat is None:
            return
        last_beat = self._last_beat
        if self.keepalive is not None and self.keepalive.last_success is not None:
            # loop.time() is time.monotonic(), the keepalive thread's clock.
            last_beat = max(last_beat, self.keepalive.last_success)
        silent = asyncio.get_running_loop().time() - last_beat
        if silent <= self.lease.total_seconds():
            return
        self.evicted = True
        log.error(
            "replica_evicted",
            member=self.id,
            silent_seconds=round(silent, 1),
            hint="no heartbeat reached the store within the lease: the others own this member's work",
        )
        # Not release(): the server may not answer; closing is enough for it to drop the lock.
        await self.leadership.abandon()
        await self._apply((), False)

    async def _apply(self, members: tuple[str, ...], leading: bool) -> None:
        if members == self._members and leading == self._leading:
            return
        if members != self._members:
            log.info("replica_members_changed", member=self.id, members=list(members))
        self._members, self._leading = members, leading
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception:
                # The next change tries again; a listener's bug must not stop the heartbeats.
                log.exception("replica_change_failed", member=self.id)


def replica_for(
    store: SqlStore,
    config: ReplicasConfig,
    *,
    supervisor: Supervisor | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Replica | SoloReplica:
    """A sharing replica on a PostgreSQL store; the sole process on SQLite."""
    engine = store.engine
    if not isinstance(engine, PostgresEngine):
        return SoloReplica(config.name)
    member_id = new_member_id(config.name)
    leadership = PostgresLeadership(
        engine.url,
        schema=engine.schema,
        member_id=member_id,
        lease=config.lease,
        connect_timeout=engine.connect_timeout,
    )
    lease = config.lease.total_seconds()
    keepalive = KeepAlive(
        engine.url,
        schema=engine.schema,
        member_id=member_id,
        interval=lease / 3,
        stall_limit=max(KEEPALIVE_LEASES * lease, KEEPALIVE_MIN_SECONDS),
        connect_timeout=engine.connect_timeout,
    )
    return Replica(
        store,
        config,
        leadership,
        supervisor=supervisor,
        clock=clock,
        member_id=member_id,
        keepalive=keepalive,
    )
