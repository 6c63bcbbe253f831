"""An exclusive, expiring lease on a name, shared by every process that opens the same SQLite store.

Taken with one conditional upsert inside a write transaction (BEGIN IMMEDIATE serialises writers across
processes): the row is ours when it did not exist, had lapsed, or was already ours. It lapses on its own
after `ttl`, so a holder killed mid-way blocks the others for at most that long.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import structlog

__all__ = ["LeaseBusy", "StoreLease", "TransactionalStore"]

log = structlog.get_logger(__name__)

_TAKE = (
    "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE"
    " SET holder = excluded.holder, expires_at = excluded.expires_at"
    " WHERE leases.expires_at <= ?4 OR leases.holder = ?2"
)
# Between attempts to take a lease someone else holds.
_POLL = 0.05


@runtime_checkable
class TransactionalStore(Protocol):
    """What a lease needs of the store: a write transaction (monitor.store.SqlStore has it)."""

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...


class LeaseBusy(Exception):
    """Someone else held the lease for longer than we were willing to wait."""


class StoreLease:
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

    async def __aenter__(self) -> StoreLease:
        deadline = time.monotonic() + self.wait
        while not await self.try_take():
            if time.monotonic() >= deadline:
                raise LeaseBusy(f"lease {self.name} is held elsewhere")
            await asyncio.sleep(_POLL)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.release()
        except Exception as error:
            # It lapses by itself after ttl; the refresh it guarded is done either way.
            log.warning("lease_release_failed", lease=self.name, error=type(error).__name__)
