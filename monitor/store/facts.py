"""What readiness and /metrics know about the store's writes, and the connection chores around them.

Readiness is read from facts gathered as writes happen (when the last commit succeeded, since when
writes fail, how much waits in memory), so /readyz costs nothing and never opens a write transaction
that a locked database would make wait.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import suppress

import aiosqlite

__all__ = ["WriteFacts", "close_joined", "rollback"]

# aiosqlite's worker thread exits right after close(); this bounds the wait for it.
_JOIN_SECONDS = 5.0


class WriteFacts:
    """Outcome of the store's write transactions, kept as they happen (monotonic clock)."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.last_commit: float | None = None
        self.failing_since: float | None = None
        # Durable writes (incidents, crossings, alerts, sync results) waiting to be retried.
        self.durable_waiting = 0

    def committed(self) -> None:
        self.last_commit = time.monotonic()
        self.failing_since = None

    def failed(self, op: str) -> None:
        self.errors[op] += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    def last_commit_age(self) -> float | None:
        return None if self.last_commit is None else time.monotonic() - self.last_commit

    def failing_for(self) -> float:
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since


async def _rollback_now(conn: aiosqlite.Connection) -> None:
    # "no transaction is active" when the BEGIN failed or the COMMIT went through: nothing to undo.
    with suppress(Exception):
        await conn.execute("ROLLBACK")


async def rollback(conn: aiosqlite.Connection) -> None:
    """Undo whatever transaction is open, even while being cancelled (the ROLLBACK still runs)."""
    await asyncio.shield(_rollback_now(conn))


async def close_joined(conn: aiosqlite.Connection) -> None:
    """Close an aiosqlite connection and wait for its worker thread to end, so none outlives the store."""
    # aiosqlite keeps its worker thread private and does not join it on close(); a thread still
    # running after the daemon stopped is what kept test runs from exiting.
    thread = getattr(conn, "_thread", None)
    with suppress(Exception):
        await conn.close()
    if thread is None:
        return
    # close() returns once the thread has run its last statement; it only has to return now, so this
    # blocking join lasts microseconds (bounded in case aiosqlite ever changes).
    thread.join(_JOIN_SECONDS)
