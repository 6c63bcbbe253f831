"""Who is sharing the work: one row per running member in `replica_members`, kept fresh by heartbeats.

A member is live while its last heartbeat is younger than its lease, measured on the database's clock
on PostgreSQL (so replicas whose clocks disagree still agree on who is live); SQLite has one process and
uses its own clock. A clean stop sets `left_at`, so the others take the member's share at once instead of
after its lease. The heartbeat loop and what follows from it (ownership, leadership) are in node.py.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.store.engine import POSTGRESQL
from monitor.store.sql import SqlStore

__all__ = ["Member", "Membership", "new_member_id"]

# The database's own clock, in ms since epoch: one clock for every replica.
_PG_NOW = "(extract(epoch from clock_timestamp())*1000)::bigint"
# Rows of members gone (left or silent) longer than this are deleted when a member joins.
_FORGET_AFTER = timedelta(days=1)


def new_member_id(name: str | None = None) -> str:
    """A fresh id for this process start: `name` (default host-pid) and a random suffix."""
    base = name or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Member:
    """One member as stored; times in ms since epoch (of the database's clock on PostgreSQL)."""

    id: str
    host: str
    pid: int
    started_at: int
    last_seen_at: int
    lease_ms: int


class Membership:
    """This process's row in `replica_members`: join, heartbeat, leave; and the live members it sees."""

    def __init__(
        self,
        store: SqlStore,
        member_id: str,
        lease: timedelta,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        session: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        self.store = store
        # Where the statements run: by default a store transaction; on PostgreSQL the member's own
        # connection (leader.PostgresLeadership.session), so heartbeats never queue behind the writer.
        self._session = session or (lambda: store.transaction("replicas"))
        self.id = member_id
        self.lease = lease
        self._clock = clock

    @property
    def _now(self) -> str:
        """SQL for now in ms: the server's clock on PostgreSQL; on SQLite this process's, as a literal
        (an int, so nothing to quote)."""
        if self.store.dialect == POSTGRESQL:
            return _PG_NOW
        return str(int(self._clock().timestamp() * 1000))

    async def join(self) -> tuple[str, ...]:
        """Insert this member (or revive it, for an id given twice) and return the live members."""
        now = self._now
        forget_ms = int(_FORGET_AFTER / timedelta(milliseconds=1))
        async with self._session() as conn:
            await conn.execute(
                f"DELETE FROM replica_members WHERE coalesce(left_at, last_seen_at + lease_ms) < {now} - ?",
                (forget_ms,),
            )
            await conn.execute(
                "INSERT INTO replica_members (id, host, pid, started_at, last_seen_at, lease_ms, left_at)"
                f" VALUES (?, ?, ?, {now}, {now}, ?, NULL) ON CONFLICT (id) DO UPDATE SET"
                " last_seen_at = excluded.last_seen_at, lease_ms = excluded.lease_ms, left_at = NULL",
                (self.id, socket.gethostname(), os.getpid(), self._lease_ms),
            )
            return await self._live(conn)

    async def beat(self) -> tuple[str, ...]:
        """Move this member's last_seen_at to now and return the live members (sorted ids). A member
        whose row is gone (deleted by hand) joins again."""
        async with self._session() as conn:
            rows = await conn.execute_fetchall(
                f"UPDATE replica_members SET last_seen_at = {self._now} WHERE id = ? AND left_at IS NULL"
                " RETURNING id",
                (self.id,),
            )
            if rows:
                return await self._live(conn)
        return await self.join()

    async def leave(self) -> None:
        """A clean stop: the others stop counting this member at their next heartbeat."""
        async with self._session() as conn:
            await conn.execute(f"UPDATE replica_members SET left_at = {self._now} WHERE id = ?", (self.id,))

    async def members(self) -> list[Member]:
        """The live members as stored, oldest first (for the API and the CLI)."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT id, host, pid, started_at, last_seen_at, lease_ms FROM replica_members"
            f" WHERE left_at IS NULL AND last_seen_at + lease_ms > {self._now} ORDER BY started_at, id"
        )
        return [Member(*row) for row in rows]

    async def _live(self, conn: Any) -> tuple[str, ...]:
        rows = await conn.execute_fetchall(
            "SELECT id FROM replica_members"
            f" WHERE left_at IS NULL AND last_seen_at + lease_ms > {self._now} ORDER BY id"
        )
        return tuple(row[0] for row in rows)

    @property
    def _lease_ms(self) -> int:
        return int(self.lease / timedelta(milliseconds=1))
