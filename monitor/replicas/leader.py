"""One elected member: the one that exports figures derived from the shared tables (and, through the
alert service, sends digests and repeats), so sums over replicas never count them twice.

On PostgreSQL the leader is whoever holds the session advisory lock `lock_key("leader")` on a connection
of its own: the server releases it the moment that connection ends (a killed replica, a network cut), and
the next member to try takes it. Each heartbeat re-checks it (`check`). The member's heartbeats run on the
same connection (`session`), never on the store's writer: a heartbeat queued behind a large sync write
would make a busy member look dead. On SQLite there is one process, always the leader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Protocol

import structlog

from monitor.store.engine import (
    DB_ERRORS,
    DEFAULT_CONNECT_TIMEOUT,
    UNAVAILABLE_ERRORS,
    PgConnection,
    connect_postgres,
)
from monitor.store.postgres import lock_key

__all__ = ["Leadership", "PostgresLeadership", "SoleLeadership"]

log = structlog.get_logger("monitor.replicas.leader")

_TRY = f"SELECT pg_try_advisory_lock({lock_key('leader')})"
_UNLOCK = f"SELECT pg_advisory_unlock({lock_key('leader')})"


class Leadership(Protocol):
    """Whether this member leads; `check` is called every heartbeat, `release` at stop or eviction."""

    @property
    def is_leader(self) -> bool: ...

    async def check(self) -> bool: ...

    async def release(self) -> None: ...

    async def abandon(self) -> None: ...


class SoleLeadership:
    """SQLite: the only process is the leader."""

    is_leader = True

    async def check(self) -> bool:
        return True

    async def release(self) -> None:
        return None

    async def abandon(self) -> None:
        return None


class PostgresLeadership:
    """The leader lock on a dedicated connection (never the store's: its lock must outlive no one)."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        member_id: str = "",
        lease: timedelta | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._lease = lease
        self._schema = schema
        self._member_id = member_id
        self._conn: PgConnection | None = None
        self._connecting = asyncio.Lock()
        self.is_leader = False

    @property
    def connection(self) -> PgConnection | None:
        """The connection holding (or trying for) the lock; tests close it to see the leader move."""
        return self._conn

    async def _connected(self) -> PgConnection:
        # One connect at a time: heartbeats abandoned on an unreachable server wait here rather than
        # each opening a connection of its own.
        async with self._connecting:
            if self._conn is None or self._conn.closed:
                self._drop()
                conn = await connect_postgres(
                    self._url,
                    application_name="tthc-monitor-replica",
                    schema=self._schema,
                    connect_timeout=self._connect_timeout,
                )
                try:
                    if self._lease is not None:
                        await _end_when_silent(conn, self._lease)
                except BaseException:
                    await conn.close()
                    raise
                self._conn = conn
            return self._conn

    @asynccontextmanager
    async def session(self) -> AsyncIterator[PgConnection]:
        """This member's own connection, in autocommit (membership heartbeats run on it). A broken
        connection is dropped, with the lock it held, and the next use connects again."""
        try:
            yield await self._connected()
        except UNAVAILABLE_ERRORS:
            await self.abandon()
            raise

    async def check(self) -> bool:
        """Still the leader (the connection answers), or the leader now (the lock was free)."""
        try:
            conn = await self._connected()
            if self.is_leader:
                # A session lock lives as long as its connection: a round trip proves both.
                await conn.execute("SELECT 1")
            else:
                rows = await conn.execute_fetchall(_TRY)
                if rows[0][0]:
                    self.is_leader = True
                    log.info("replica_leader_elected", member=self._member_id)
        except DB_ERRORS as exc:
            if self.is_leader:
                log.warning("replica_leader_lost", member=self._member_id, error=type(exc).__name__)
            await self._close()
        return self.is_leader

    async def release(self) -> None:
        """Give the lock up at once (clean stop, eviction) rather than when the connection times out."""
        if self._conn is not None and self.is_leader and not self._conn.closed:
            # Should the unlock fail, closing the connection below releases the lock as well.
            with suppress(*DB_ERRORS):
                await self._conn.execute(_UNLOCK)
            log.info("replica_leader_released", member=self._member_id)
        await self._close()

    async def abandon(self) -> None:
        """Close the connection without a word to the server (it may not answer): the server drops the
        lock when it notices, and nothing here claims to lead meanwhile."""
        if self.is_leader:
            log.warning("replica_leader_abandoned", member=self._member_id)
        await self._close()

    def _drop(self) -> None:
        if self.is_leader:
            log.warning("replica_leader_lost", member=self._member_id, error="connection closed")
        self.is_leader = False
        self._conn = None

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.is_leader = False
        if conn is not None:
            # Already broken: nothing holds the lock any more.
            with suppress(*DB_ERRORS):
                await conn.close()


async def _end_when_silent(conn: PgConnection, lease: timedelta) -> None:
    """Have the server end this session once it has been silent for two leases (PostgreSQL 14+), and
    probe its client with keepalives: a member cut off by the network (not killed: its socket stays
    open) would otherwise hold the leader lock until TCP gave up, hours later, and nobody could lead.
    Two leases, not one: the member has counted itself out after one (node.py) and a member whose loop
    merely stalled keeps its connection."""
    seconds = max(1, int(lease.total_seconds()))
    for name, value in (
        ("idle_session_timeout", f"{int(lease.total_seconds() * 2000)}"),
        ("tcp_keepalives_idle", f"{seconds}"),
        ("tcp_keepalives_interval", f"{seconds}"),
        ("tcp_keepalives_count", "2"),
    ):
        # An older server without one of these settings keeps the others.
        with suppress(*DB_ERRORS):
            await conn.execute("SELECT set_config(?, ?, false)", (name, value))
