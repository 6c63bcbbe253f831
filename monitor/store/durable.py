"""Durable facts are written until committed: a locked or full disk delays them, never drops them.

Incidents, crossings, outbox rows and sync results each have a single writer that handles them in order;
that writer awaits `until_committed`, which retries the write with backoff for as long as the store
answers with an operational error (locked, busy, disk full, I/O error). Meanwhile the fact counts in the
store's backlog (`tthc_store_backlog`), and every failed attempt in `tthc_store_errors_total{op}`.
Other errors (a bug, a constraint) are not retried here: retrying cannot fix them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from monitor.store.engine import UNAVAILABLE_ERRORS
from monitor.store.facts import WriteFacts

__all__ = ["until_committed"]

log = structlog.get_logger("monitor.store.durable")

T = TypeVar("T")

_FIRST_DELAY = 0.05
# Short enough that a store coming back is used within a second; each attempt on a locked file already
# waits busy_timeout inside SQLite, so this costs no busy loop.
_MAX_DELAY = 1.0
# A stall is logged when it starts and then every this many attempts, not on every retry.
_LOG_EVERY = 30


async def until_committed(facts: WriteFacts, op: str, write: Callable[[], Awaitable[T]]) -> T:
    """`await write()` until it succeeds; operational store errors are retried with backoff."""
    delay = _FIRST_DELAY
    attempts = 0
    try:
        while True:
            try:
                result = await write()
            except UNAVAILABLE_ERRORS as exc:
                attempts += 1
                if attempts == 1:
                    facts.durable_waiting += 1
                if attempts % _LOG_EVERY == 1:
                    log.warning("store_write_retrying", op=op, attempts=attempts, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(_MAX_DELAY, delay * 2)
                continue
            if attempts:
                log.info("store_write_caught_up", op=op, attempts=attempts + 1)
            return result
    finally:
        if attempts:
            facts.durable_waiting -= 1
