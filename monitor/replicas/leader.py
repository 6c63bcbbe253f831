"""One elected member: the one that exports figures derived from the shared tables (and, through the
alert service, sends digests and repeats), so sums over replicas never count them twice.

On PostgreSQL the leader is whoever holds the session advisory lock `lock_key("leader")` on a connection
of its own: the server releases it the moment that connection ends (a killed replica, a network cut), and
the next member to try takes it. Each heartbeat re-checks it (`check`). On SQLite there is one process,
always the leader.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Protocol

import structlog

from monitor.store.engine import DB_ERRORS, PgConnection, connect_postgres
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


class SoleLeadership:
    """SQLite: the only process is the leader."""

    is_leader = True

    async def check(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class PostgresLeadership:
    """The leader lock on a dedicated connection (never the store's: its lock must outlive no one)."""

    def __init__(self, url: str, *, schema: str | None = None, member_id: str = "") -> None:
        self._url = url
        self._schema = schema
        self._member_id = member_id
        self._conn: PgConnection | None = None
        self.is_leader = False

    @property
    def connection(self) -> PgConnection | None:
        """The connection holding (or trying for) the lock; tests close it to see the leader move."""
        return self._conn

    async def check(self) -> bool:
        """Still the leader (the connection answers), or the leader now (the lock was free)."""
        try:
            if self._conn is None or self._conn.closed:
                self._drop()
                self._conn = await connect_postgres(
                    self._url, application_name="tthc-monitor-leader", schema=self._schema
                )
            if self.is_leader:
                # A session lock lives as long as its connection: a round trip proves both.
                await self._conn.execute("SELECT 1")
            else:
                rows = await self._conn.execute_fetchall(_TRY)
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
