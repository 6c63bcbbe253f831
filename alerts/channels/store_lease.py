"""One holder at a time across every process on the store: an expiring lease on SQLite, an advisory lock
on PostgreSQL (`exclusive` picks).

SQLite (`StoreLease`): taken with one conditional upsert inside a write transaction (BEGIN IMMEDIATE
serialises writers across processes): the row is ours when it did not exist, had lapsed, or was already
ours. It lapses on its own after `ttl`, so a holder killed mid-way blocks the others for at most that long.

PostgreSQL (`AdvisoryLock`): replicas share the database, and the server already has the primitive: a
session advisory lock (`pg_try_advisory_lock`) on a connection of its own, held for the guarded work and
released by `pg_advisory_unlock`, or by the server when a killed holder's connection drops, at once.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import structlog

from monitor.store.engine import POSTGRESQL
from monitor.store.postgres import lock_key

__all__ = ["AdvisoryLock", "Exclusive", "LeaseBusy", "StoreLease", "TransactionalStore", "exclusive"]

log = structlog.get_logger(__name__)

_TAKE = (
    "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE"
    " SET holder = excluded.holder, expires_at = excluded.expires_at"
    " WHERE leases.expires_at <= ?4 OR leases.holder = ?2"
)
# lock_key puts the name inside a SQL string literal.
_LOCK_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Between attempts to take a lease someone else holds.
_POLL = 0.05


@runtime_checkable
class TransactionalStore(Protocol):
    """What a lease needs of the store: a write transaction (monitor.store.SqlStore has it)."""

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...


class LeaseBusy(Exception):
    """Someone else held the lease for longer than we were willing to wait."""


async def _take_within(try_take: Callable[[], Awaitable[bool]], wait: float, what: str) -> None:
    """Try to take `what` until it is ours, for at most `wait` seconds (then LeaseBusy)."""
    deadline = time.monotonic() + wait
    while not await try_take():
        if time.monotonic() >= deadline:
            raise LeaseBusy(f"{what} is held elsewhere")
        await asyncio.sleep(_POLL)


class _OneHolder(ABC):
    """`async with`: taken within `wait` seconds (else LeaseBusy), released on leaving."""

    name: str
    wait: float

    @abstractmethod
    async def try_take(self) -> bool: ...

    @abstractmethod
    async def release(self) -> None: ...

    async def __aenter__(self) -> Self:
        try:
            await _take_within(self.try_take, self.wait, self.name)
        except BaseException:
            # Nothing of ours to release when not taken; a connection opened for it is closed.
            await self.release()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.release()
        except Exception as error:
            # A lease lapses by itself after its ttl, a lock goes with its connection; the work it
            # guarded is done either way.
            log.warning("lease_release_failed", lease=self.name, error=type(error).__name__)


class StoreLease(_OneHolder):
    """`async with StoreLease(store, "zalo.refresh.<app>", ttl=15, wait=20):` one holder at a time."""

    def __init__(
        self,
        store: TransactionalStore,
        name: str,
        *,
        ttl: float,
        wait: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.name = name
        self.ttl = ttl
        self.wait = wait
        self.holder = uuid.uuid4().hex
        self._clock = clock

    async def try_take(self) -> bool:
        """Take (or extend) the lease now if it is free, lapsed or ours."""
        now = int(self._clock() * 1000)
        async with self.store.transaction() as conn:
            cursor = await conn.execute(_TAKE, (self.name, self.holder, now + int(self.ttl * 1000), now))
            taken = cursor.rowcount > 0
            await cursor.close()
        return taken

    async def release(self) -> None:
        async with self.store.transaction() as conn:
            await conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (self.name, self.holder))


class AdvisoryLock(_OneHolder):
    """`async with AdvisoryLock(store, "zalo-refresh", wait=20):` one holder at a time across every replica
    on the store's PostgreSQL database (the lock key is scoped to the store's schema: `lock_key`)."""

    def __init__(self, store: Any, name: str, *, wait: float) -> None:
        self.store = store
        self.name = name
        self.wait = wait
        if not _LOCK_NAME.match(name):
            raise ValueError(f"lock name {name!r}: letters, digits and . _ - only")
        self._key = lock_key(name)
        self._conn: Any = None

    async def try_take(self) -> bool:
        """Take the lock now if nobody holds it (on a connection of its own, opened if needed)."""
        if self._conn is None:
            self._conn = await self.store.engine.open_reader()
        rows = await self._conn.execute_fetchall(f"SELECT pg_try_advisory_lock({self._key})")
        return bool(rows[0][0])

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.execute(f"SELECT pg_advisory_unlock({self._key})")
        finally:
            # Closing the session would release the lock anyway.
            await self.store.engine.close(conn)


Exclusive = StoreLease | AdvisoryLock


def exclusive(store: object, name: str, *, lock: str, ttl: float, wait: float) -> Exclusive | None:
    """One holder at a time across the processes on `store`: the advisory lock `lock` on PostgreSQL, the
    lease row `name` on SQLite; None for a store with neither (memory only: one process)."""
    if getattr(store, "dialect", None) == POSTGRESQL:
        return AdvisoryLock(store, lock, wait=wait)
    if isinstance(store, TransactionalStore):
        return StoreLease(store, name, ttl=ttl, wait=wait)
    return None
