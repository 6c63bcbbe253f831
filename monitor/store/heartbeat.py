"""The daemon's heartbeat: one `monitor_runs` row per run, so uptime counts only time it was watching.

`start` closes runs a crash left open (at their last heartbeat) and inserts this run; from then on
`last_seen_at` moves forward every `interval` inside the store's own batch transaction, which commits
every flush interval while results flow, so the heartbeat costs no commit of its own. Only when nothing
was flushed for a whole interval (no targets, or all between probes) does it commit alone. `stop` sets
`stopped_at`. The same beat copies the open rollups for other processes (live.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from monitor.store import live
from monitor.store.engine import POSTGRESQL, SQLITE
from monitor.store.monitored import STALE_HEARTBEATS, ms
from monitor.store.sql import SqlStore
from monitor.supervisor import Supervisor

__all__ = ["Heartbeat"]

log = structlog.get_logger("monitor.heartbeat")

# ?1 now in ms. SQLite: one daemon per file, so every open run crashed; PostgreSQL: replicas share runs.
_CLOSE_CRASHED = {
    SQLITE: "UPDATE monitor_runs SET stopped_at = last_seen_at WHERE stopped_at IS NULL",
    POSTGRESQL: "UPDATE monitor_runs SET stopped_at = last_seen_at WHERE stopped_at IS NULL"
    f" AND last_seen_at < ?1 - heartbeat_ms * {STALE_HEARTBEATS}",
}
# ?1 now in ms, ?2 the run.
_BEAT = {
    SQLITE: "UPDATE monitor_runs SET last_seen_at = max(last_seen_at, ?1) WHERE id = ?2",
    POSTGRESQL: "UPDATE monitor_runs SET last_seen_at = GREATEST(last_seen_at, ?1) WHERE id = ?2",
}
_STOP = {
    SQLITE: "UPDATE monitor_runs SET last_seen_at = max(last_seen_at, ?1), stopped_at = ?1 WHERE id = ?2",
    POSTGRESQL: "UPDATE monitor_runs SET last_seen_at = GREATEST(last_seen_at, ?1), stopped_at = ?1"
    " WHERE id = ?2",
}


class Heartbeat:
    """Records one daemon run in `store`: `await start()`, then `await stop()` before the store closes."""

    def __init__(
        self,
        store: SqlStore,
        interval: timedelta = timedelta(seconds=10),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        supervisor: Supervisor | None = None,
    ) -> None:
        self.store = store
        self._supervisor = supervisor
        self.interval = interval
        self._clock = clock
        self.run_id: int | None = None
        self._beat_ms = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def _interval_ms(self) -> int:
        return max(1, int(self.interval / timedelta(milliseconds=1)))

    async def start(self) -> int:
        """Insert this run (committed before returning) and start beating; returns the run id."""
        now = ms(self._clock())
        async with self.store.transaction("heartbeat") as conn:
            # A run without stopped_at was killed: it watched until its last heartbeat. On PostgreSQL
            # other replicas' runs are open too: only those silent past their heartbeat are over.
            dialect = self.store.dialect
            await conn.execute(_CLOSE_CRASHED[dialect], (now,) if dialect == POSTGRESQL else ())
            rows = await conn.execute_fetchall(
                "INSERT INTO monitor_runs (started_at, last_seen_at, heartbeat_ms) VALUES (?, ?, ?)"
                " RETURNING id",
                (now, now, self._interval_ms),
            )
        self.run_id = int(rows[0][0])
        self._beat_ms = now
        self.store.current_run = self.run_id
        self.store.add_batch_hook(self._in_batch)
        if self._supervisor is not None:
            self._task = self._supervisor.spawn("heartbeat", self._keep_alive)
        else:
            self._task = asyncio.create_task(self._keep_alive(), name="heartbeat")
        log.info("monitor_run_started", run_id=self.run_id)
        return self.run_id

    async def _in_batch(self, conn: Any, _now_s: int, closing: bool) -> None:
        now = ms(self._clock())
        if closing or now - self._beat_ms >= self._interval_ms:
            await self._beat(conn, now)

    async def _beat(self, conn: Any, now: int) -> None:
        run_id = self.run_id
        if run_id is None:
            return
        await conn.execute(_BEAT[self.store.dialect], (now, run_id))
        await live.write_live(conn, run_id, self.store.live_tables(), self.store.committed_target_id)
        self._beat_ms = now

    async def _keep_alive(self) -> None:
        """Beat in a transaction of its own when no flush carried the beat for a whole interval."""
        seconds = self.interval.total_seconds()
        while True:
            await asyncio.sleep(seconds)
            now = ms(self._clock())
            if now - self._beat_ms < self._interval_ms + self.store.flush_interval * 1000:
                continue
            try:
                async with self.store.transaction("heartbeat") as conn:
                    await self._beat(conn, now)
            except Exception as exc:
                # The store is locked or full: the run looks stopped at its last beat until the next one.
                log.warning("heartbeat_failed", error=str(exc))

    async def stop(self) -> None:
        """A clean stop: the run ends now. Call before the store closes."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.run_id is None:
            return
        self.store.remove_batch_hook(self._in_batch)
        now = ms(self._clock())
        try:
            async with self.store.transaction("heartbeat") as conn:
                await conn.execute(_STOP[self.store.dialect], (now, self.run_id))
                # A stopped run's copy is read by nobody (live.py); the close flush stages the entries.
                await live.drop_closed(conn, self.run_id, None)
        except Exception as exc:
            log.warning("heartbeat_stop_failed", error=str(exc))
        else:
            log.info("monitor_run_stopped", run_id=self.run_id)
        self.store.current_run = None
        self.run_id = None
