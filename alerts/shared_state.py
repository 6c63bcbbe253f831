"""The routing state replicas share: timers and outage groups, read back from the table before each change.

One daemon keeps `alert_timers` in memory and writes it through. Replicas each route their own targets'
events and the elected member fires timers and reminders, all on the same rows: a member's memory may be
stale, and two members changing one outage group at once (two targets of one person down together) would
each write back their own copy, one losing the other's member. So with replicas every change to the state
happens inside `current()`: on PostgreSQL under the `alert-routing` advisory lock, one member at a time,
each starting from the rows as the last one left them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from alerts.channels.store_lease import AdvisoryLock
from monitor.store import SqlStore
from monitor.store.engine import POSTGRESQL

__all__ = ["SharedRoutingState"]

# How long a member waits for another's routing change (milliseconds each, unless its store stalls).
_WAIT = 60.0


class SharedRoutingState:
    """`async with state.current():` the timers and groups as the table holds them, changed by one member
    at a time. Without replicas (`shared` False) it does nothing: memory is the truth."""

    def __init__(self, store: SqlStore | None, reload: Callable[[], Awaitable[None]], shared: bool) -> None:
        self.store = store
        self.reload = reload
        self.shared = shared

    @asynccontextmanager
    async def current(self, needed: bool = True) -> AsyncIterator[None]:
        if not (self.shared and needed):
            yield
            return
        if self.store is None or self.store.dialect != POSTGRESQL:
            # Replicas share only PostgreSQL; on SQLite (tests) reading back is all there is to do.
            await self.reload()
            yield
            return
        async with AdvisoryLock(self.store, "alert-routing", wait=_WAIT):
            await self.reload()
            yield
