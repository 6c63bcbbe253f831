"""The store's buffered probe-result writer: `record()` into memory, one transaction per flush interval.

`record()` only appends to memory (buffer.py); a background writer task commits one batch per
`flush_interval` (results.py) and runs the retention pass now and again. A slow, locked, full or
unreachable database makes the bounded buffer grow (`pending_writes`), never a probe wait; the failed
batch goes back to memory and is retried. Open minutes and hours stay in memory until they close, where
reports read them too (`_reading`); the batch hooks (the heartbeat) run inside every flush transaction.

`ResultWriting` is the part of `SqlStore` (sql.py) that does this; the store supplies the connections,
`transaction()`, the committed target ids, the clock and the retention pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

import structlog

from monitor.model import Health
from monitor.store import packed
from monitor.store.base import ProbeResult, StoreError
from monitor.store.buffer import HOUR, MINUTE, WriteBuffer, to_ms
from monitor.store.engine import DB_ERRORS, UNAVAILABLE_ERRORS
from monitor.store.facts import WriteFacts
from monitor.store.reports import InMemory
from monitor.store.results import BatchHook, flush_batch, health_by_target, load_open_rows
from monitor.store.rollups import PACK_SPECS
from monitor.store.targets import TargetRow
from monitor.supervisor import Supervisor

__all__ = ["ResultWriting"]

log = structlog.get_logger("monitor.store.sql")


class ResultWriting:
    """Probe results from memory to the database, for `SqlStore` (see the module docstring)."""

    # Supplied by SqlStore, besides `reader`, `dialect`, `transaction()` and `run_retention()`.
    readonly: bool
    flush_interval: float
    retention_interval: timedelta
    current_run: int | None
    facts: WriteFacts
    _clock: Callable[[], datetime]
    _supervisor: Supervisor
    _targets: dict[str, TargetRow]
    _writer: Any

    def _init_results(self, success_sample_interval: timedelta, raw_backlog_limit: int) -> None:
        self._flush_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._buffer = WriteBuffer(success_sample_interval, raw_backlog_limit)
        # Row buckets (hours of minutes, days of hours) with entries waiting in `rollup_open`.
        self._open_rows: dict[str, set[int]] = {spec.table: set() for spec in PACK_SPECS}
        self._batch_hooks: list[BatchHook] = []

    async def _start_writer(self, reader: Any) -> None:
        """Read back the rollup entries staged by the last run, then start the background writer."""
        for table, buckets in (await load_open_rows(reader)).items():
            self._open_rows[table].update(buckets)
        self._stop.clear()
        self._writer_task = self._supervisor.spawn("store-writer", self._run_writer)

    async def _stop_writer(self) -> None:
        """Stop the background writer and flush everything pending, open minutes and hours included.

        Never raises for a flush that fails (a locked or full disk at shutdown): what could not be
        written is logged and dropped; durable facts were committed by their own writers already.
        """
        if self._writer_task is None:
            return
        self._stop.set()
        task, self._writer_task = self._writer_task, None
        # Waited for, not awaited: a writer cancelled from outside must not fail the close.
        await asyncio.wait([task])
        async with self._flush_lock:
            try:
                # Open minutes and hours too: they are staged, so nothing is lost over a restart.
                await self._flush(force=True)
            except DB_ERRORS as exc:
                log.warning("store_close_unflushed", error=str(exc), pending_writes=self.pending_writes)

    # --- the probe path -------------------------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        """Results recorded but not yet committed (grows while the database is slow or locked)."""
        return self._buffer.backlog

    def record(self, result: ProbeResult) -> None:
        """Buffer one result. Synchronous and cheap: the probe path must never wait on the disk."""
        if self.readonly:
            raise StoreError("store is read-only")
        self._buffer.record(result)

    # --- the writer -----------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Commit buffered results: raw rows and health at once, rollup entries once their minute or hour
        has closed (open ones stay in memory, where reports read them); put back if the commit fails."""
        async with self._flush_lock:
            await self._flush(force=False)

    async def _flush(self, force: bool) -> None:
        """One batch; `force` also stages the open minutes and hours (on close, so nothing is lost).

        The event loop is only ever busy for a slice of about a millisecond at a time: the packed rows
        that close are read and encoded before the transaction in sliced steps, and SQLite runs in
        aiosqlite's thread (it lets go of the GIL while stepping).
        """
        await flush_batch(
            self.reader,
            self.transaction,
            self._buffer,
            self._open_rows,
            self._targets,
            self._batch_hooks,
            self.dialect,
            self.current_run,
            to_ms(self._clock()) // 1000,
            force,
        )

    async def _run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        # The first pass waits a little so start-up is not spent deleting old history.
        next_retention = loop.time() + min(self.retention_interval.total_seconds(), 60.0)
        failures = 0
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.flush_interval)
            stopping = self._stop.is_set()
            try:
                await self.flush()
            except Exception as exc:
                # Keep going: the batch is back in memory and the next pass retries it. Logged when the
                # stall starts and then now and again, not on every pass (tthc_store_errors_total counts).
                if failures % 60 == 0:
                    log.warning(
                        "store_flush_failed",
                        error=str(exc),
                        pending_writes=self.pending_writes,
                        failures=failures,
                    )
                failures += 1
            else:
                if failures:
                    log.info("store_flush_recovered", failures=failures)
                failures = 0
            if stopping:
                return
            if loop.time() >= next_retention:
                next_retention = loop.time() + self.retention_interval.total_seconds()
                try:
                    deleted = await self.run_retention()
                except Exception as exc:
                    log.warning("store_retention_failed", error=str(exc))
                else:
                    if deleted:
                        log.info("store_retention", deleted=deleted)

    def add_batch_hook(self, hook: BatchHook) -> None:
        """Run `hook` inside every flush transaction (no commit of its own): the daemon's heartbeat."""
        self._batch_hooks.append(hook)

    def remove_batch_hook(self, hook: BatchHook) -> None:
        with suppress(ValueError):
            self._batch_hooks.remove(hook)

    def live_tables(self) -> list[tuple[int, Mapping[tuple[str, int], packed.Counts]]]:
        """The open minute and hour entries in memory, for the heartbeat's copy (live.py)."""
        return [(MINUTE, self._buffer.minutes), (HOUR, self._buffer.hours)]

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[InMemory | None]:
        """What reports add to the committed rows: the writer's open minutes and hours (None read-only)."""
        if self._writer is None:
            yield None
            return
        # Under the flush lock no batch is half-way between memory and the file, so the open minutes
        # and hours still in memory add to what is committed without counting anything twice.
        async with self._flush_lock:
            with suppress(*UNAVAILABLE_ERRORS):
                # A locked or full disk: the batch went back to memory, where the report reads it too.
                await self._flush(force=False)
            yield InMemory(self._buffer.minutes, self._buffer.hours, self._targets, self.current_run)

    async def latest_health(self) -> dict[str, Health]:
        """Last known health per target: what is committed, overlaid with what is still buffered."""
        return await health_by_target(self.reader, self._buffer.last_health)

    @property
    def backlog(self) -> int:
        """What waits in memory for the store: buffered probe results and durable writes being retried."""
        return self._buffer.backlog + self.facts.durable_waiting

    @property
    def dropped_samples(self) -> int:
        return self._buffer.dropped_samples
