"""The store over one database engine: lifecycle, transactions, and the aggregates it delegates to.

`SqlStore` is the one object implementing `monitor.store.base.Store`; each aggregate keeps its SQL (both
engines' statements side by side where they differ) in its own module and the store delegates:
probe results and rollups (results.py, packing.py, reports.py, live.py), target ids (targets.py),
incidents (incidents.py), key-value state (kv.py), daemon runs (heartbeat.py, monitored.py).

- `record()` only appends to memory (buffer.py); a background writer commits one transaction per
  `flush_interval` (results.py, driven by result_writer.py, whose `ResultWriting` SqlStore inherits). A
  slow, locked, full or unreachable database makes the bounded buffer grow (`pending_writes`), never a
  probe wait; the failed batch goes back to memory and is retried.
- Successes that change nothing are folded into packed per-minute and per-hour rollups (packed.py):
  ~7 GB -> 0.93 GB at 1,000 targets x 10 s with the default retention.
- Two connections: the writer (all writes, serialised by `transaction()`) and a reader, so reads never
  see half a batch and never queue behind a flush. On PostgreSQL both reconnect after the server or the
  network dropped them (engine.PgConnection).

Other modules extend the store with their own tables (added in migrations.py) and methods that write
through `async with store.transaction(op) as conn:` and read through `store.reader`. Durable facts are
written through `until_committed` (durable.py); readiness reads `store.facts` (facts.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, Self

import structlog

from monitor.store import incidents, kv, live, monitored
from monitor.store.availability import Span
from monitor.store.base import Incident, StoreError, UptimeReport
from monitor.store.buffer import HEALTH_CODES, HOUR, REASON_CODES, to_ms
from monitor.store.engine import UNAVAILABLE_ERRORS, Dialect
from monitor.store.facts import WriteFacts, rollback
from monitor.store.migrations import MIGRATIONS, Migration
from monitor.store.reports import Planned, coverage, uptime_reports
from monitor.store.result_writer import ResultWriting
from monitor.store.results import RETENTION, BatchHook
from monitor.store.targets import TargetRow, load_targets
from monitor.supervisor import Supervisor

__all__ = ["HEALTH_CODES", "REASON_CODES", "BatchHook", "Engine", "SqlStore"]

log = structlog.get_logger(__name__)

# What both engines' connections offer (aiosqlite's, or engine.PgConnection wearing its methods).
Connection = Any


class Engine(Protocol):
    """Connecting to one kind of database and its few engine-only steps (sqlite.py, postgres.py)."""

    dialect: Dialect
    # Starts a write transaction that takes the write lock at once (SQLite) or just a transaction.
    begin: str

    def describe(self) -> str: ...

    async def open_writer(
        self, migrations: Sequence[Migration], *, migrate: bool
    ) -> tuple[Any, list[int]]: ...

    async def open_reader(self) -> Any: ...

    async def open_readonly(self, migrations: Sequence[Migration]) -> Any: ...

    async def power_safe(self, conn: Any, on: bool) -> None: ...

    async def reclaim(self, conn: Any) -> None: ...

    async def close(self, conn: Any) -> None: ...


_MS = timedelta(milliseconds=1)
_DAY = 86400


class SqlStore(ResultWriting):
    """The `Store` on one database engine (engine.py): SQLite for one machine, PostgreSQL for replicas.

    Use a subclass: `async with SqliteStore(path) as store:` or `PostgresStore(url)`; the daemon builds
    one from its config with `monitor.store.open.store_from_config`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        raw_retention: timedelta = timedelta(days=7),
        minute_retention: timedelta = timedelta(days=90),
        hour_retention: timedelta = timedelta(days=730),
        flush_interval: float | timedelta = 1.0,
        success_sample_interval: timedelta = timedelta(minutes=5),
        retention_interval: timedelta = timedelta(hours=1),
        raw_backlog_limit: int = 200_000,
        supervisor: Supervisor | None = None,
        clock: Callable[[], datetime] | None = None,
        readonly: bool = False,
        auto_migrate: bool = True,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.engine = engine
        self.raw_retention = raw_retention
        self.minute_retention = minute_retention
        self.hour_retention = hour_retention
        self.flush_interval = _seconds(flush_interval)
        self.success_sample_interval = success_sample_interval
        self.retention_interval = retention_interval
        self.readonly = readonly
        self.auto_migrate = auto_migrate
        self._clock = clock or (lambda: datetime.now(UTC))
        self._migrations = tuple(migrations)
        self._writer: Connection | None = None
        self._reader: Connection | None = None
        self._write_lock = asyncio.Lock()
        self._supervisor = supervisor or Supervisor()
        self.facts = WriteFacts()
        self._init_results(success_sample_interval, raw_backlog_limit)
        # name -> (id, first_seen ms, stored health code); only what is committed.
        self._targets: dict[str, TargetRow] = {}
        # The daemon run this process records (heartbeat.py): its watched time extends to now.
        self.current_run: int | None = None

    @property
    def dialect(self) -> Dialect:
        """ "sqlite" or "postgresql": which of two side-by-side statements to run (engine.pick)."""
        return self.engine.dialect

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate (or check the schema), start the background writer."""
        if self._reader is not None:
            return
        if self.readonly:
            self._reader = await self.engine.open_readonly(self._migrations)
            return
        writer, applied = await self.engine.open_writer(self._migrations, migrate=self.auto_migrate)
        try:
            if applied:
                log.info("store_migrated", store=self.engine.describe(), versions=applied)
            await self._on_writer_open(writer)
            reader = await self.engine.open_reader()
        except BaseException:
            await self.engine.close(writer)
            raise
        self._writer, self._reader = writer, reader
        self._targets.update(await load_targets(reader))
        await self._start_writer(reader)

    async def _on_writer_open(self, writer: Connection) -> None:
        # Crashed or stopped runs' copies of their open rollups; live replicas' copies stay (live.py).
        await live.drop_dead(writer, to_ms(self._clock()))

    async def close(self) -> None:
        """Flush everything pending, stop the writer, close both connections and join their threads.

        Never raises for a flush that fails (a locked or full disk at shutdown): what could not be
        written is logged and dropped; durable facts were committed by their own writers already.
        """
        try:
            await self._stop_writer()
        finally:
            connections = [conn for conn in (self._writer, self._reader) if conn is not None]
            self._writer = self._reader = None
            for conn in connections:
                await self.engine.close(conn)

    # --- extension points -----------------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The writer connection. Write only inside `transaction()`; read through `reader`."""
        if self._writer is None:
            raise StoreError("store is read-only" if self.readonly else "store is not open")
        return self._writer

    @property
    def reader(self) -> Connection:
        """The read connection: sees committed data only, never waits for the writer."""
        if self._reader is None:
            raise StoreError("store is not open")
        return self._reader

    @asynccontextmanager
    async def transaction(self, op: str = "write", *, power_safe: bool = False) -> AsyncIterator[Connection]:
        """BEGIN IMMEDIATE ... COMMIT on the writer, serialised with the batch writer; rolls back on error.

        `op` names the kind of write in `tthc_store_errors_total{op}`. `power_safe` commits with
        synchronous=FULL: the default NORMAL may lose the last commits on power loss (fine for history,
        not for a single-use token). Cancellation-safe: aiosqlite runs
        statements in order on its thread, so a ROLLBACK queued after a cancelled BEGIN or COMMIT always
        undoes what that statement left open (a leftover transaction made the next BEGIN fail with
        "cannot start a transaction within a transaction").
        """
        conn = self.connection
        async with self._write_lock:
            # Read between statements (aiosqlite's thread is idle): only a commit that changed rows
            # shows the disk takes writes; an empty one succeeds even on a full disk.
            changes = conn.total_changes
            if power_safe:
                await self.engine.power_safe(conn, True)
            try:
                await conn.execute(self.engine.begin)
                try:
                    yield conn
                    await conn.execute("COMMIT")
                except BaseException:
                    await rollback(conn)
                    raise
            except asyncio.CancelledError:
                await rollback(conn)
                raise
            except UNAVAILABLE_ERRORS:
                self.facts.failed(op)
                raise
            finally:
                if power_safe:
                    # Queued after whatever ran before, so it also runs when this task is cancelled.
                    await asyncio.shield(self.engine.power_safe(conn, False))
            if conn.total_changes != changes:
                self.facts.committed()

    # --- incidents ------------------------------------------------------------------------------------

    async def open_incident(self, target: str, started_at: datetime, reason: str | None, detail: str) -> int:
        """The id of `target`'s open incident (committed before returning): a new one, or the one already
        open (a replica taking the target over continues it; see incidents.py)."""
        async with self.transaction("incident") as conn:
            incident_id, added = await incidents.open_incident(
                conn, self._targets, target, to_ms(started_at), reason, detail
            )
        self._targets.update(added)
        return incident_id

    async def close_incident(self, incident_id: int, ended_at: datetime) -> None:
        """Set the end of an open incident; closing one already closed changes nothing."""
        async with self.transaction("incident") as conn:
            await incidents.close_incident(conn, self.dialect, incident_id, to_ms(ended_at))

    async def open_incidents(self) -> list[Incident]:
        """Incidents still open (to resume after a restart), oldest first."""
        return await incidents.open_incidents(self.reader)

    async def incidents(
        self, since: datetime, until: datetime | None = None, target: str | None = None
    ) -> list[Incident]:
        """Incidents overlapping [since, until) (an open one overlaps all after its start), newest first."""
        until_ms = None if until is None else to_ms(until)
        return await incidents.incidents_overlapping(self.reader, to_ms(since), until_ms, target)

    async def interrupted_at(self, target: str, started_at: datetime) -> datetime:
        """Where an incident left open by an earlier run stops counting (monitored.py)."""
        now = self._clock()
        return await monitored.interrupted_at(self.reader, target, started_at, now, self.current_run)

    async def reopen_incident(self, incident_id: int) -> None:
        """Open again an incident closed at a restart because its target is still down."""
        async with self.transaction("incident") as conn:
            if not await incidents.reopen_incident(conn, incident_id):
                raise StoreError(f"no incident {incident_id}")

    def committed_target_id(self, name: str) -> int | None:
        known = self._targets.get(name)
        return known[0] if known else None

    # --- uptime ---------------------------------------------------------------------------------------

    async def uptime(
        self, target: str, start: datetime, end: datetime, planned: Planned | None = None
    ) -> UptimeReport:
        """Uptime of one target over its monitored time in [start, end) (see `monitored_spans`)."""
        reports = await self._reports(start, end, target, planned)
        if reports:
            return reports[0]
        clipped = min(end, self._clock())
        return UptimeReport(target, clipped, clipped, None, 0.0, 0, 0, 0, 0, None, None)

    async def uptime_all(
        self, start: datetime, end: datetime, planned: Planned | None = None
    ) -> list[UptimeReport]:
        """`uptime` for every known target, in a handful of queries whatever the number of targets."""
        return await self._reports(start, end, None, planned)

    async def monitored_spans(
        self, start: datetime, end: datetime, planned: Planned | None = None
    ) -> dict[str, list[Span]]:
        """Per known target, the parts of [start, end) the monitor was watching it (see reports.py)."""
        return {name: found.monitored for name, found in (await self.coverage(start, end, planned)).items()}

    async def coverage(
        self, start: datetime, end: datetime, planned: Planned | None = None
    ) -> dict[str, monitored.Coverage]:
        """Per known target, `monitored_spans` and the seconds of the window the monitor was not running."""
        async with self._reading() as memory:
            return await coverage(self.reader, memory, self._clock(), start, end, planned)

    async def _reports(
        self, start: datetime, end: datetime, target: str | None, planned: Planned | None
    ) -> list[UptimeReport]:
        async with self._reading() as memory:
            return await uptime_reports(
                self.reader, memory, self._clock(), start, end, target, self.minute_retention, planned
            )

    # --- retention, readiness, key/value ---------------------------------------------------------------

    async def run_retention(self, now: datetime | None = None, batch: int = 5000) -> int:
        """Delete expired history in transactions of at most `batch` rows; return how many rows went."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        # Buffered results may already be expired (e.g. after a long lock); let them go in this pass.
        await self.flush()
        now = now or self._clock()
        now_ms = to_ms(now)
        raw_cutoff = to_ms(now - self.raw_retention)
        minute_cutoff = to_ms(now - self.minute_retention) // 1000
        hour_cutoff = to_ms(now - self.hour_retention) // 1000
        incident_cutoff = now_ms - int(self.hour_retention / _MS)
        statements = RETENTION[self.dialect]
        cutoffs = [raw_cutoff, minute_cutoff - HOUR, hour_cutoff - _DAY, incident_cutoff]
        deleted = 0
        for sql, cutoff in zip(statements, cutoffs, strict=True):
            while True:
                async with self.transaction("retention") as conn:
                    cursor = await conn.execute(sql, (cutoff, batch))
                    count = cursor.rowcount
                    await cursor.close()
                deleted += count
                # Let flushes and incident writes in between batches.
                await asyncio.sleep(0)
                if count < batch:
                    break
        if deleted:
            async with self._write_lock:
                await self.engine.reclaim(self.connection)
        return deleted

    async def writable(self) -> bool:
        """Whether writes are committing (for the CLI and /readyz): from facts, never a transaction."""
        return self._writer is not None and self.facts.failing_since is None

    async def get_value(self, key: str) -> str | None:
        """A value from the durable key/value table, or None."""
        return await kv.read_value(self.reader, key)

    async def set_value(self, key: str, value: str) -> None:
        """Store a value and make it survive a power cut before returning (e.g. a single-use token)."""
        async with self.transaction("kv", power_safe=True) as conn:
            await kv.write_value(conn, key, value, to_ms(self._clock()))

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "readwrite"
        return (
            f"{type(self).__name__}({self.engine.describe()!r}, {mode}, pending_writes={self.pending_writes})"
        )


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
