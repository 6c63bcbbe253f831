"""The SQLite store: buffered writes off the probe path, compact history, rollup-based uptime.

Why it looks like this (Uptime Kuma's heartbeat table grew to GBs and DB work caused false downtime):
- `record()` only appends to memory; a background writer commits one transaction per `flush_interval`.
  A slow or locked database makes the buffer grow (`pending_writes`), never a probe wait.
- Successes that change nothing are folded into per-minute and per-hour rollups; the raw table keeps
  failures, degraded and maintenance results, state changes and one sample per target per
  `success_sample_interval`.
- Rollups are packed (packed.py): one row per target per hour holding its minutes, one per target per
  UTC day holding its hours (with day totals as columns), ~7 GB -> 0.93 GB at 1,000 targets x
  10 s with the default retention. The writer keeps the current rows in memory and rewrites each touched
  row once per flush; after a restart it reads them back before merging, so nothing counts twice.
- Uptime precision: counts are exact to the minute while minute rollups are kept (to the hour after);
  latency percentiles and the maximum come from hour histograms, so a window edge inside an hour brings
  that whole hour's latencies (within about 4.5 % per bucket otherwise). Stored maxima are rounded up by
  at most 4.4 % and latency sums read back within 2.2 % (packed.py), which keeps the packs small.
- Two connections: the writer (all writes, serialised by `transaction()`) and a reader, so reads never
  see half a batch and never queue behind a flush. WAL lets another process (the CLI) read meanwhile.

Other modules extend the store with their own tables (added in migrations.py) and methods that write
through `async with store.transaction() as conn:` and read through `store.reader`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite
import structlog

from monitor.model import FailureReason, Health
from monitor.store import latency, packed
from monitor.store.availability import Span, availability, subtract_spans
from monitor.store.base import Incident, ProbeResult, StoreError, UptimeReport
from monitor.store.files import prepare_private_file
from monitor.store.migrations import MIGRATIONS, Migration, apply_migrations, schema_version

if TYPE_CHECKING:
    from monitor.store.config import StoreConfig

__all__ = ["HEALTH_CODES", "REASON_CODES", "SqliteStore"]

log = structlog.get_logger(__name__)

# Per target, planned maintenance in the window: left out of monitored time.
Planned = Mapping[str, Sequence[Span]]

# Stable codes stored in probe_results; append new ones, never renumber.
HEALTH_CODES: dict[Health, int] = {Health.UNKNOWN: 0, Health.UP: 1, Health.DEGRADED: 2, Health.DOWN: 3}
REASON_CODES: dict[FailureReason, int] = {
    FailureReason.TIMEOUT: 1,
    FailureReason.REFUSED: 2,
    FailureReason.DNS: 3,
    FailureReason.TLS: 4,
    FailureReason.CERT_EXPIRING: 5,
    FailureReason.STATUS: 6,
    FailureReason.BODY_MISMATCH: 7,
    FailureReason.SLOW: 8,
    FailureReason.ERROR: 9,
}
_HEALTH_BY_CODE = {code: health for health, code in HEALTH_CODES.items()}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MINUTE = 60
_HOUR = 3600
_DAY = 86400


def _to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone aware")
    return (value - _EPOCH) // _MS


def _from_ms(value: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=value)


def _floor(value: int, size: int) -> int:
    return value - value % size


class _Rollup(packed.Counts):
    """Running totals of one target over one minute or hour (mutable: updated on every record)."""

    __slots__ = ()

    def add(self, result: ProbeResult, duration_us: int, bucket: int) -> None:
        self.probes += 1
        outcome = result.outcome
        if result.in_maintenance:
            self.maintenance += 1
        elif not outcome.success:
            self.failures += 1
        elif outcome.degraded:
            self.degraded += 1
        if outcome.success:
            # A timeout's "latency" is the timeout itself; it would only blur the percentiles.
            self.latency_sum_us += duration_us
            self.latency_max_us = max(self.latency_max_us, duration_us)
            self.histogram[bucket] = self.histogram.get(bucket, 0) + 1


@dataclass(frozen=True, slots=True)
class _PackSpec:
    """One packed rollup table: rows of `row_size` seconds holding entries of `entry_size` seconds."""

    table: str
    blob: str
    row_size: int
    entry_size: int
    v1_unit_us: int  # latency unit of packs written before pack version 2
    histograms: bool


# Latencies are quantised as packed.py says (sums within 2.2 %, maxima rounded up by at most 4.4 %).
_MINUTES = _PackSpec("rollup_minute", "minutes", 3600, 60, 1000, False)
_HOURS = _PackSpec("rollup_hour", "hours", 86400, 3600, 100, True)
_Pack = dict[int, packed.Counts]  # entry offset -> counts


_SPECS = (_MINUTES, _HOURS)
_MEMORY = {_MINUTES.table: "_minutes", _HOURS.table: "_hours"}
# Longest stretch of rollup work on the event loop before letting probes run (probe lateness p99 < 20 ms).
_SLICE_SECONDS = 0.001


_RawRow = tuple[str, int, int, int, int, int, int, int, int | None, int | None]


@dataclass(slots=True)
class _Batch:
    """What one flush takes out of memory; put back as a whole if the transaction fails.

    `rollups` holds, per packed table, the closed entries (minutes or hours) keyed by (target, bucket).
    """

    raw: list[_RawRow]
    rollups: dict[str, dict[tuple[str, int], _Rollup]]
    health: dict[str, int]
    first_seen: dict[str, int]
    count: int


@dataclass(slots=True)
class _Closing:
    """Packed rows of one table written by this flush: their row buckets and (row, target, totals, blob)."""

    buckets: set[int]
    rows: list[tuple[int, str, tuple[int, ...], bytes]]


class _Slicer:
    """Yields to the event loop once a slice of CPU time is used up."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline = time.perf_counter() + _SLICE_SECONDS

    async def tick(self) -> None:
        if time.perf_counter() >= self.deadline:
            await asyncio.sleep(0)
            self.deadline = time.perf_counter() + _SLICE_SECONDS


def _add_values(counts: packed.Counts, values: Sequence[int], histogram: bytes | None) -> None:
    """Add a `rollup_open` row (probes, failures, degraded, maintenance, sum, max) into counts."""
    probes, failures, degraded, maintenance, total, top = values
    counts.probes += probes
    counts.failures += failures
    counts.degraded += degraded
    counts.maintenance += maintenance
    counts.latency_sum_us += total
    counts.latency_max_us = max(counts.latency_max_us, top)
    if histogram:
        latency.decode(histogram, counts.histogram)


@dataclass(slots=True)
class _Totals:
    """Rollup sums of one target over a report window."""

    probes: int = 0
    failures: int = 0
    degraded: int = 0
    maintenance: int = 0
    latency_max_us: int = 0
    histogram: dict[int, int] | None = None

    def add(
        self, probes: int, failures: int, degraded: int, maintenance: int, max_us: int, hist: dict[int, int]
    ) -> None:
        self.probes += probes
        self.failures += failures
        self.degraded += degraded
        self.maintenance += maintenance
        # Rounded up as packs store it, so a report reads the same before and after its hour is packed.
        self.latency_max_us = max(self.latency_max_us, packed.ceil_latency(max_us or 0))
        if hist:
            if self.histogram is None:
                self.histogram = {}
            for index, count in hist.items():
                self.histogram[index] = self.histogram.get(index, 0) + count


class SqliteStore:
    """The `Store` on one SQLite file. Use `async with SqliteStore(path) as store:` or open()/close()."""

    def __init__(
        self,
        path: Path | str,
        *,
        raw_retention: timedelta = timedelta(days=7),
        minute_retention: timedelta = timedelta(days=90),
        hour_retention: timedelta = timedelta(days=730),
        flush_interval: float | timedelta = 1.0,
        success_sample_interval: timedelta = timedelta(minutes=5),
        retention_interval: timedelta = timedelta(hours=1),
        busy_timeout: float | timedelta = 5.0,
        clock: Callable[[], datetime] | None = None,
        readonly: bool = False,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path)
        self.raw_retention = raw_retention
        self.minute_retention = minute_retention
        self.hour_retention = hour_retention
        self.flush_interval = _seconds(flush_interval)
        self.success_sample_interval = success_sample_interval
        self.retention_interval = retention_interval
        self.busy_timeout = _seconds(busy_timeout)
        self.readonly = readonly
        self._clock = clock or (lambda: datetime.now(UTC))
        self._migrations = tuple(migrations)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._sample_ms = int(success_sample_interval / _MS)
        # In-memory side of the buffer.
        self._raw: list[_RawRow] = []
        self._minutes: dict[tuple[str, int], _Rollup] = {}
        self._hours: dict[tuple[str, int], _Rollup] = {}
        self._dirty_health: dict[str, int] = {}
        self._first_seen: dict[str, int] = {}
        self._pending = 0
        self._inflight = 0
        self._last_row_ms: dict[str, int] = {}
        self._last_health: dict[str, Health] = {}
        # Row buckets (hours of minutes, days of hours) with entries waiting in `rollup_open`.
        self._open_rows: dict[str, set[int]] = {spec.table: set() for spec in _SPECS}
        # name -> (id, first_seen ms, stored health code); only what is committed.
        self._targets: dict[str, tuple[int, int, int | None]] = {}

    @classmethod
    def from_config(cls, config: StoreConfig, *, clock: Callable[[], datetime] | None = None) -> SqliteStore:
        """A store set up from the `store:` section of the config."""
        return cls(
            config.path,
            raw_retention=config.raw_retention,
            minute_retention=config.minute_retention,
            hour_retention=config.hour_retention,
            flush_interval=config.flush_interval,
            success_sample_interval=config.success_sample_interval,
            clock=clock,
        )

    @classmethod
    async def open_readonly(
        cls, path: Path | str, *, clock: Callable[[], datetime] | None = None
    ) -> SqliteStore:
        """An opened read-only store (no writer, no migrations), for the CLI while the daemon runs."""
        store = cls(path, clock=clock, readonly=True)
        await store.open()
        return store

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file if needed, migrate, tune, start the background writer."""
        if self._reader is not None:
            return
        if self.readonly:
            await self._open_readonly()
            return
        prepare_private_file(self.path)
        writer = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await writer.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            rows = await writer.execute_fetchall("PRAGMA page_count")
            if rows[0][0] == 0:
                # Only settable before the first table; lets retention hand pages back to the disk.
                await writer.execute("PRAGMA auto_vacuum = INCREMENTAL")
            await writer.execute("PRAGMA journal_mode = WAL")
            await writer.execute("PRAGMA synchronous = NORMAL")
            await writer.execute("PRAGMA journal_size_limit = 67108864")
            applied = await apply_migrations(writer, self._migrations)
            if applied:
                log.info("store_migrated", path=str(self.path), versions=applied)
            reader = await self._connect_reader(self.path.resolve().as_uri())
        except BaseException:
            await writer.close()
            raise
        self._writer, self._reader = writer, reader
        for target_id, name, first_seen, health in await reader.execute_fetchall(
            "SELECT id, name, first_seen, health FROM targets"
        ):
            self._targets[name] = (target_id, first_seen, health)
        for spec in _SPECS:
            for (bucket,) in await reader.execute_fetchall(
                "SELECT DISTINCT bucket - bucket % ? FROM rollup_open WHERE size = ?",
                (spec.row_size, spec.entry_size),
            ):
                self._open_rows[spec.table].add(bucket)
        self._stop.clear()
        self._writer_task = asyncio.create_task(self._run_writer(), name="store-writer")

    async def _open_readonly(self) -> None:
        if not self.path.is_file():
            raise StoreError(f"no store at {self.path}")
        reader = await self._connect_reader(self.path.resolve().as_uri() + "?mode=ro")
        try:
            try:
                version = await schema_version(reader)
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"{self.path} is not a tthc-monitor store ({exc}): check the path; if it is the "
                    "store, restore it from a backup"
                ) from exc
            latest = self._migrations[-1].version if self._migrations else 0
            if not version:
                raise StoreError(f"{self.path} has no store schema: start the daemon once to create it")
            if version > latest:
                raise StoreError(f"store schema version {version} is newer than this program ({latest})")
            if version < latest:
                raise StoreError(f"store schema version {version} is older than this program ({latest})")
        except BaseException:
            await reader.close()
            raise
        self._reader = reader

    async def _connect_reader(self, uri: str) -> aiosqlite.Connection:
        reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        try:
            await reader.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            await reader.execute("PRAGMA query_only = 1")
        except BaseException:
            await reader.close()
            raise
        return reader

    async def close(self) -> None:
        """Flush everything pending, stop the writer, close both connections."""
        try:
            if self._writer_task is not None:
                self._stop.set()
                task, self._writer_task = self._writer_task, None
                await task
                async with self._flush_lock:
                    # Open minutes and hours too: they are staged, so nothing is lost over a restart.
                    await self._flush(force=True)
        finally:
            for conn in (self._writer, self._reader):
                if conn is not None:
                    await conn.close()
            self._writer = self._reader = None

    # --- extension points -----------------------------------------------------------------------------

    @property
    def connection(self) -> aiosqlite.Connection:
        """The writer connection. Write only inside `transaction()`; read through `reader`."""
        if self._writer is None:
            raise StoreError("store is read-only" if self.readonly else "store is not open")
        return self._writer

    @property
    def reader(self) -> aiosqlite.Connection:
        """The read connection: sees committed data only, never waits for the writer."""
        if self._reader is None:
            raise StoreError("store is not open")
        return self._reader

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT on the writer, serialised with the batch writer; rolls back on error."""
        conn = self.connection
        async with self._write_lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise

    # --- the probe path -------------------------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        """Results recorded but not yet committed (grows while the database is slow or locked)."""
        return self._pending + self._inflight

    def record(self, result: ProbeResult) -> None:
        """Buffer one result. Synchronous and cheap: the probe path must never wait on the disk."""
        if self.readonly:
            raise StoreError("store is read-only")
        name = result.target
        at_ms = _to_ms(result.at)
        at_s = at_ms // 1000
        duration_us = max(0, round(result.duration * 1_000_000))
        latency_bucket = latency.bucket_index(result.duration)
        for table, size in ((self._minutes, _MINUTE), (self._hours, _HOUR)):
            key = (name, _floor(at_s, size))
            rollup = table.get(key)
            if rollup is None:
                rollup = table[key] = _Rollup()
            rollup.add(result, duration_us, latency_bucket)
        outcome = result.outcome
        health_code = HEALTH_CODES[result.health]
        last_row = self._last_row_ms.get(name)
        interesting = not outcome.success or outcome.degraded or result.changed or result.in_maintenance
        if interesting or last_row is None or at_ms - last_row >= self._sample_ms:
            self._raw.append(
                (
                    name,
                    at_ms,
                    duration_us,
                    health_code,
                    int(outcome.success),
                    int(outcome.degraded),
                    int(result.in_maintenance),
                    int(result.changed),
                    _reason_code(outcome.reason),
                    outcome.status_code,
                )
            )
            self._last_row_ms[name] = at_ms
        self._last_health[name] = result.health
        self._dirty_health[name] = health_code
        first = self._first_seen.get(name)
        if first is None or at_ms < first:
            self._first_seen[name] = at_ms
        self._pending += 1

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
        now_s = _to_ms(self._clock()) // 1000
        batch = self._take(now_s, force)
        if batch is None:
            return
        try:
            closing = await self._prepare_closing(batch, now_s)
            staged = await self._staging_params(batch, closing)
            async with self.transaction() as conn:
                added = await self._write_batch(conn, batch, closing, staged)
        except BaseException:
            self._put_back(batch)
            raise
        finally:
            self._inflight = 0
        self._targets.update(added)
        for spec in _SPECS:
            rows = self._open_rows[spec.table]
            rows.update(_floor(bucket, spec.row_size) for _, bucket in batch.rollups[spec.table])
            rows.difference_update(closing[spec.table].buckets)

    def _take(self, now_s: int, force: bool) -> _Batch | None:
        rollups: dict[str, dict[tuple[str, int], _Rollup]] = {}
        for spec, table in ((_MINUTES, self._minutes), (_HOURS, self._hours)):
            if force:
                closed = table
                setattr(self, _MEMORY[spec.table], {})
            else:
                closed = {key: rollup for key, rollup in table.items() if key[1] + spec.entry_size <= now_s}
                for key in closed:
                    del table[key]
            rollups[spec.table] = closed
        due = any(
            bucket + spec.row_size <= now_s for spec in _SPECS for bucket in self._open_rows[spec.table]
        )
        if not (self._pending or due or any(rollups.values())):
            return None
        batch = _Batch(self._raw, rollups, self._dirty_health, self._first_seen, self._pending)
        self._raw, self._dirty_health, self._first_seen = [], {}, {}
        self._inflight, self._pending = self._pending, 0
        return batch

    def _put_back(self, batch: _Batch) -> None:
        self._raw = batch.raw + self._raw
        for spec in _SPECS:
            table: dict[tuple[str, int], _Rollup] = getattr(self, _MEMORY[spec.table])
            for key, rollup in batch.rollups[spec.table].items():
                if key in table:
                    rollup.merge(table[key])
                table[key] = rollup
        self._dirty_health = batch.health | self._dirty_health
        for name, first in batch.first_seen.items():
            self._first_seen[name] = min(first, self._first_seen.get(name, first))
        self._pending += batch.count

    async def _prepare_closing(self, batch: _Batch, now_s: int) -> dict[str, _Closing]:
        """Encode every packed row whose hour (minutes) or day (hours) is over: what is staged, what this
        batch brings, and (rarely: late results, a restart) what is already packed for the same row."""
        closing: dict[str, _Closing] = {}
        slicer = _Slicer()
        id_names: dict[int, str] = {}
        for spec in _SPECS:
            entries = batch.rollups[spec.table]
            buckets = {b for b in self._open_rows[spec.table] if b + spec.row_size <= now_s}
            buckets.update(
                row
                for row in {_floor(bucket, spec.row_size) for _, bucket in entries}
                if row + spec.row_size <= now_s
            )
            if buckets and not id_names:
                id_names = {known[0]: name for name, known in self._targets.items()}
            packs: dict[tuple[int, str], _Pack] = {}

            def entry(
                row: int, name: str, offset: int, packs: dict[tuple[int, str], _Pack] = packs
            ) -> packed.Counts:
                pack = packs.setdefault((row, name), {})
                counts = pack.get(offset)
                if counts is None:
                    counts = pack[offset] = packed.Counts()
                return counts

            for row in sorted(buckets):
                if row in self._open_rows[spec.table]:
                    for tid, bucket, *values, hist in await self.reader.execute_fetchall(
                        "SELECT target_id, bucket, probes, failures, degraded, maintenance, latency_sum_us,"
                        " latency_max_us, histogram FROM rollup_open WHERE size = ? AND bucket >= ?"
                        " AND bucket < ?",
                        (spec.entry_size, row, row + spec.row_size),
                    ):
                        offset = (bucket - row) // spec.entry_size
                        _add_values(entry(row, id_names[tid], offset), values, hist)
                        await slicer.tick()
                for tid, blob in await self.reader.execute_fetchall(
                    f"SELECT target_id, {spec.blob} FROM {spec.table} WHERE bucket = ?", (row,)
                ):
                    # Already packed (late results, or a row closed before a restart): merge, rewrite.
                    for offset, counts in packed.decode(blob, spec.histograms, spec.v1_unit_us).items():
                        entry(row, id_names[tid], offset).merge(counts)
                    await slicer.tick()
            for (name, bucket), rollup in entries.items():
                row = _floor(bucket, spec.row_size)
                if row in buckets:
                    entry(row, name, (bucket - row) // spec.entry_size).merge(rollup)
            rows = []
            for (row, name), pack in sorted(packs.items()):
                blob = packed.encode(pack, spec.histograms)
                if spec.histograms:
                    values = pack.values()
                    top = max(e.latency_max_us for e in values)
                    totals: tuple[int, ...] = (
                        sum(e.probes for e in values),
                        sum(e.failures for e in values),
                        sum(e.degraded for e in values),
                        sum(e.maintenance for e in values),
                        packed.ceil_latency(top),
                    )
                else:
                    totals = ()
                rows.append((row, name, totals, blob))
                await slicer.tick()
            closing[spec.table] = _Closing(buckets, rows)
        return closing

    async def _staging_params(
        self, batch: _Batch, closing: dict[str, _Closing]
    ) -> list[tuple[int, int, str, int, int, int, int, int, int, bytes]]:
        """Rows for `rollup_open`: closed entries of packed rows that are still open (target names)."""
        params = []
        slicer = _Slicer()
        for spec in _SPECS:
            closed_rows = closing[spec.table].buckets
            for (name, bucket), r in batch.rollups[spec.table].items():
                if _floor(bucket, spec.row_size) in closed_rows:
                    continue
                hist = latency.encode(r.histogram) if spec.histograms else b""
                params.append(
                    (
                        spec.entry_size,
                        bucket,
                        name,
                        r.probes,
                        r.failures,
                        r.degraded,
                        r.maintenance,
                        r.latency_sum_us,
                        r.latency_max_us,
                        hist,
                    )
                )
                await slicer.tick()
        return params

    async def _write_batch(
        self,
        conn: aiosqlite.Connection,
        batch: _Batch,
        closing: dict[str, _Closing],
        staged: list[tuple[int, int, str, int, int, int, int, int, int, bytes]],
    ) -> dict[str, tuple[int, int, int | None]]:
        ids, added = await self._resolve_targets(conn, batch.first_seen)

        def target_id(name: str) -> int:
            # An entry's target is in this batch or was committed by an earlier one.
            return ids[name] if name in ids else self._targets[name][0]

        await conn.executemany(
            "INSERT OR IGNORE INTO probe_results (target_id, at, duration_us, health, success, degraded,"
            " in_maintenance, changed, reason, status_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(ids[row[0]], *row[1:]) for row in batch.raw],
        )
        # Late entries for a minute or hour already staged add up (histogram encodings concatenate).
        await conn.executemany(
            "INSERT INTO rollup_open (size, bucket, target_id, probes, failures, degraded, maintenance,"
            " latency_sum_us, latency_max_us, histogram) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (size, bucket, target_id) DO UPDATE SET probes = probes + excluded.probes,"
            " failures = failures + excluded.failures, degraded = degraded + excluded.degraded,"
            " maintenance = maintenance + excluded.maintenance,"
            " latency_sum_us = latency_sum_us + excluded.latency_sum_us,"
            " latency_max_us = max(latency_max_us, excluded.latency_max_us),"
            " histogram = CAST(histogram || excluded.histogram AS BLOB)",
            [(size, bucket, target_id(name), *rest) for size, bucket, name, *rest in staged],
        )
        for spec in _SPECS:
            rows = closing[spec.table]
            if spec.histograms:
                await conn.executemany(
                    "INSERT OR REPLACE INTO rollup_hour (bucket, target_id, probes, failures, degraded,"
                    " maintenance, latency_max_us, hours) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(row, target_id(name), *totals, blob) for row, name, totals, blob in rows.rows],
                )
            else:
                await conn.executemany(
                    "INSERT OR REPLACE INTO rollup_minute (bucket, target_id, minutes) VALUES (?, ?, ?)",
                    [(row, target_id(name), blob) for row, name, _, blob in rows.rows],
                )
            for row in sorted(rows.buckets):
                await conn.execute(
                    "DELETE FROM rollup_open WHERE size = ? AND bucket >= ? AND bucket < ?",
                    (spec.entry_size, row, row + spec.row_size),
                )
        changed_health = []
        for name, code in batch.health.items():
            known = added.get(name) or self._targets.get(name)
            if known is not None and known[2] != code:
                changed_health.append((code, ids[name]))
                added[name] = (known[0], known[1], code)
        await conn.executemany("UPDATE targets SET health = ? WHERE id = ?", changed_health)
        return added

    async def _resolve_targets(
        self, conn: aiosqlite.Connection, first_seen: dict[str, int]
    ) -> tuple[dict[str, int], dict[str, tuple[int, int, int | None]]]:
        """Target ids for this batch, inserting new targets; `added` is applied to the cache after commit."""
        ids: dict[str, int] = {}
        added: dict[str, tuple[int, int, int | None]] = {}
        for name, first in first_seen.items():
            known = self._targets.get(name)
            if known is not None and known[1] <= first:
                ids[name] = known[0]
                continue
            rows = await conn.execute_fetchall(
                "INSERT INTO targets (name, first_seen) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                " SET first_seen = min(first_seen, excluded.first_seen) RETURNING id, first_seen, health",
                (name, first),
            )
            target_id, stored_first, health = rows[0]
            ids[name] = target_id
            added[name] = (target_id, stored_first, health)
        return ids, added

    async def _run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        # The first pass waits a little so start-up is not spent deleting old history.
        next_retention = loop.time() + min(self.retention_interval.total_seconds(), 60.0)
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.flush_interval)
            stopping = self._stop.is_set()
            try:
                await self.flush()
            except Exception as exc:
                # Keep going: the batch is back in memory and the next pass retries it.
                log.warning("store_flush_failed", error=str(exc), pending_writes=self.pending_writes)
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

    # --- incidents ------------------------------------------------------------------------------------

    async def open_incident(self, target: str, started_at: datetime, reason: str | None, detail: str) -> int:
        """Insert an open incident and return its id (committed before returning)."""
        started_ms = _to_ms(started_at)
        async with self.transaction() as conn:
            ids, added = await self._resolve_targets(conn, {target: started_ms})
            rows = await conn.execute_fetchall(
                "INSERT INTO incidents (target_id, started_at, reason, detail) VALUES (?, ?, ?, ?)"
                " RETURNING id",
                (ids[target], started_ms, reason, detail),
            )
        self._targets.update(added)
        return int(rows[0][0])

    async def close_incident(self, incident_id: int, ended_at: datetime) -> None:
        """Set the end of an open incident; closing one already closed changes nothing."""
        async with self.transaction() as conn:
            rows = await conn.execute_fetchall(
                "UPDATE incidents SET ended_at = max(started_at, ?) WHERE id = ? AND ended_at IS NULL"
                " RETURNING id",
                (_to_ms(ended_at), incident_id),
            )
            if not rows:
                exists = await conn.execute_fetchall("SELECT 1 FROM incidents WHERE id = ?", (incident_id,))
                if not exists:
                    raise StoreError(f"no incident {incident_id}")

    async def open_incidents(self) -> list[Incident]:
        """Incidents still open (to resume after a restart), oldest first."""
        rows = await self.reader.execute_fetchall(
            "SELECT i.id, t.name, i.started_at, i.ended_at, i.reason, i.detail FROM incidents AS i"
            " JOIN targets AS t ON t.id = i.target_id WHERE i.ended_at IS NULL ORDER BY i.started_at, i.id"
        )
        return [_incident(row) for row in rows]

    async def incidents(
        self, since: datetime, until: datetime | None = None, target: str | None = None
    ) -> list[Incident]:
        """Incidents overlapping [since, until) (an open one overlaps all after its start), newest first."""
        sql = (
            "SELECT i.id, t.name, i.started_at, i.ended_at, i.reason, i.detail FROM incidents AS i"
            " JOIN targets AS t ON t.id = i.target_id WHERE (i.ended_at IS NULL OR i.ended_at > ?)"
        )
        params: list[Any] = [_to_ms(since)]
        if until is not None:
            sql += " AND i.started_at < ?"
            params.append(_to_ms(until))
        if target is not None:
            sql += " AND t.name = ?"
            params.append(target)
        rows = await self.reader.execute_fetchall(sql + " ORDER BY i.started_at DESC, i.id DESC", params)
        return [_incident(row) for row in rows]

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

    async def _reports(
        self, start: datetime, end: datetime, target: str | None, planned: Planned | None
    ) -> list[UptimeReport]:
        if self._writer is None:
            return await self._reports_locked(start, end, target, planned)
        # Under the flush lock no batch is half-way between memory and the file, so the open minutes
        # and hours still in memory add to what is committed without counting anything twice.
        async with self._flush_lock:
            await self._flush(force=False)
            return await self._reports_locked(start, end, target, planned)

    async def _reports_locked(
        self, start: datetime, end: datetime, target: str | None, planned: Planned | None
    ) -> list[UptimeReport]:
        now = self._clock()
        reader = self.reader
        if target is None:
            rows = await reader.execute_fetchall("SELECT id, name, first_seen FROM targets ORDER BY name")
        else:
            rows = await reader.execute_fetchall(
                "SELECT id, name, first_seen FROM targets WHERE name = ?", (target,)
            )
        if not rows:
            return []
        target_id = rows[0][0] if target is not None else None
        spans = await self._monitored_spans_locked(rows, start, end, target_id, planned)
        end_ms = _to_ms(min(end, now))
        start_ms = _to_ms(start)
        totals = await self._rollup_totals(start_ms, end_ms, _to_ms(now - self.minute_retention), target_id)
        downtime = await self._downtime(start_ms, end_ms, target_id)
        reports = []
        for tid, name, _first_seen in rows:
            monitored = spans[name]
            window_start = _to_ms(monitored[0].start) if monitored else end_ms
            window_end = _to_ms(monitored[-1].end) if monitored else end_ms
            down = [Span(_from_ms(a), _from_ms(b)) for a, b in downtime.get(tid, ())]
            figures = availability(monitored, down)
            total = totals.get(tid, _Totals())
            histogram = total.histogram or {}
            max_latency = total.latency_max_us / 1_000_000 if total.latency_max_us else None
            reports.append(
                UptimeReport(
                    target=name,
                    start=_from_ms(window_start),
                    end=_from_ms(window_end),
                    uptime_ratio=figures.uptime_ratio,
                    downtime_seconds=figures.downtime_seconds,
                    incidents=_overlapping(downtime.get(tid), window_start, window_end),
                    probes=total.probes,
                    failures=total.failures,
                    degraded=total.degraded,
                    latency_p50=latency.percentile(histogram, 0.50, max_latency),
                    latency_p95=latency.percentile(histogram, 0.95, max_latency),
                    maintenance=total.maintenance,
                )
            )
        return reports

    # --- monitored time -------------------------------------------------------------------------------

    async def monitored_spans(
        self, start: datetime, end: datetime, planned: Planned | None = None
    ) -> dict[str, list[Span]]:
        """Per known target, the parts of [start, end) the monitor was watching it (see availability.py).

        Today: from its first stored sample (or incident) to the end of the hour of its last sample before
        the window's end, clipped to the window and to now; a target with incidents but no samples counts
        up to now. `planned` (per target, its maintenance in the window, from the config) is left out:
        planned outages are neither up nor down.
        HEARTBEAT: when the daemon records when it was running, intersect these spans with the running
        intervals here; `uptime`, the status page and the SLA report all read monitored time from here.
        """
        if self._writer is None:
            return await self._all_monitored_spans(start, end, planned)
        async with self._flush_lock:
            await self._flush(force=False)
            return await self._all_monitored_spans(start, end, planned)

    async def _all_monitored_spans(
        self, start: datetime, end: datetime, planned: Planned | None
    ) -> dict[str, list[Span]]:
        rows = await self.reader.execute_fetchall("SELECT id, name, first_seen FROM targets ORDER BY name")
        return await self._monitored_spans_locked(rows, start, end, None, planned)

    async def _monitored_spans_locked(
        self,
        rows: Iterable[Sequence[Any]],
        start: datetime,
        end: datetime,
        target_id: int | None,
        planned: Planned | None,
    ) -> dict[str, list[Span]]:
        now = self._clock()
        last_hours = await self._last_sample_hours(min(end, now), target_id)
        spans: dict[str, list[Span]] = {}
        for tid, name, first_seen in rows:
            low = max(start, _from_ms(first_seen))
            high = min(end, now)
            last_hour = last_hours.get(tid)
            if last_hour is not None:
                high = min(high, _from_ms((last_hour + _HOUR) * 1000))
            # HEARTBEAT: replace this one span by clip_spans([Span(low, high)], running), `running` being the
            # daemon's recorded run intervals over [start, end), read once before this loop.
            watched = [Span(low, high)] if low < high else []
            spans[name] = subtract_spans(watched, planned[name]) if planned and name in planned else watched
        return spans

    async def _last_sample_hours(self, end: datetime, target_id: int | None) -> dict[int, int]:
        """Per target id, the epoch second of the latest hour before `end` holding any result: from
        memory, the hours waiting in rollup_open, else the newest packed day before `end` (one index seek
        per target; a second only when that day's results all fall at or after `end`)."""
        end_s = -(-_to_ms(end) // 1000)
        reader = self.reader
        last: dict[int, int] = {}
        target_sql, params = ("", [end_s]) if target_id is None else (" WHERE t.id = ?", [end_s, target_id])
        rows = await reader.execute_fetchall(
            "SELECT t.id, r.bucket, r.hours FROM targets AS t JOIN rollup_hour AS r ON r.rowid ="
            " (SELECT rowid FROM rollup_hour WHERE target_id = t.id AND bucket < ? ORDER BY bucket DESC"
            " LIMIT 1)" + target_sql,
            params,
        )
        for tid, day, blob in rows:
            while True:
                hours = [day + offset * _HOUR for offset in packed.decode(blob, True, _HOURS.v1_unit_us)]
                before = [hour for hour in hours if hour < end_s]
                if before:
                    last[tid] = max(before)
                    break
                older = await reader.execute_fetchall(
                    "SELECT bucket, hours FROM rollup_hour WHERE target_id = ? AND bucket < ?"
                    " ORDER BY bucket DESC LIMIT 1",
                    (tid, day),
                )
                if not older:
                    break
                day, blob = older[0]
        open_sql = "" if target_id is None else " AND target_id = ?"
        rows = await reader.execute_fetchall(
            f"SELECT target_id, max(bucket) FROM rollup_open WHERE size = ? AND bucket < ?{open_sql}"
            " GROUP BY target_id",
            [_HOUR, end_s, *([] if target_id is None else [target_id])],
        )
        for tid, hour in rows:
            last[tid] = max(hour, last.get(tid, hour))
        for (name, hour), _rollup in list(self._hours.items()):
            known = self._targets.get(name)
            if known is not None and hour < end_s and (target_id is None or known[0] == target_id):
                last[known[0]] = max(hour, last.get(known[0], hour))
        return last

    async def _rollup_totals(
        self, start_ms: int, end_ms: int, minute_cutoff_ms: int, target_id: int | None
    ) -> dict[int, _Totals]:
        """Sums per target: whole days from day totals, whole hours from the packed hours, partial hours
        from the packed minutes while retained (else the whole hour).

        Counts are exact to the minute where minute rollups exist and to the hour elsewhere. Latency
        percentiles and the maximum always take whole hours: a partial hour at a window edge brings its
        whole hour's histogram (there are no per-minute histograms).
        """
        totals: dict[int, _Totals] = {}
        if end_ms <= start_ms:
            return totals
        start_s = start_ms // 1000
        end_s = -(-end_ms // 1000)
        minute_cutoff = _floor(minute_cutoff_ms // 1000, _MINUTE) + _MINUTE
        first_day, last_day = -(-start_s // _DAY) * _DAY, _floor(end_s, _DAY)
        edges = [(start_s, first_day), (last_day, end_s)] if first_day <= last_day else [(start_s, end_s)]
        whole_hours: set[int] = set()
        partial: dict[int, tuple[int, int]] = {}  # hour -> minute range [low, high) read from minutes
        for low, high in edges:
            if low >= high:
                continue
            first_hour, last_hour = -(-low // _HOUR) * _HOUR, _floor(high, _HOUR)
            pieces = [(low, first_hour), (last_hour, high)] if first_hour <= last_hour else [(low, high)]
            whole_hours.update(range(first_hour, last_hour, _HOUR))
            for piece_low, piece_high in pieces:
                if piece_low >= piece_high:
                    continue
                if _floor(piece_low, _MINUTE) >= minute_cutoff:
                    partial[_floor(piece_low, _HOUR)] = (_floor(piece_low, _MINUTE), piece_high)
                else:
                    # Minute detail is gone here: count the whole hour the piece falls in.
                    whole_hours.add(_floor(piece_low, _HOUR))
        target_sql, target_params = ("", []) if target_id is None else (" AND target_id = ?", [target_id])
        reader = self.reader
        slicer = _Slicer()

        def add_hour(tid: int, hour: int, entry: packed.Counts) -> None:
            """An hour entry not in a packed day: counts unless read from minutes, latency always."""
            if hour not in hour_histograms and not first_day <= hour < last_day:
                return
            total = totals.setdefault(tid, _Totals())
            if hour not in partial:
                total.add(entry.probes, entry.failures, entry.degraded, entry.maintenance, 0, {})
            total.add(0, 0, 0, 0, entry.latency_max_us, entry.histogram)

        def add_minute(tid: int, minute: int, entry: packed.Counts) -> None:
            piece = partial.get(_floor(minute, _HOUR))
            if piece is not None and piece[0] <= minute < piece[1]:
                total = totals.setdefault(tid, _Totals())
                total.add(entry.probes, entry.failures, entry.degraded, entry.maintenance, 0, {})

        if first_day < last_day:
            rows = await reader.execute_fetchall(
                "SELECT target_id, probes, failures, degraded, maintenance, latency_max_us, hours"
                f" FROM rollup_hour WHERE bucket >= ? AND bucket < ?{target_sql}",
                [first_day, last_day, *target_params],
            )
            for tid, probes, failures, degraded, maintenance, max_us, blob in rows:
                total = totals.setdefault(tid, _Totals())
                total.add(probes, failures, degraded, maintenance, max_us, packed.day_histogram(blob))
                await slicer.tick()
        hour_histograms = whole_hours | set(partial)
        days = sorted({_floor(hour, _DAY) for hour in hour_histograms})
        for day in days:
            rows = await reader.execute_fetchall(
                f"SELECT target_id, hours FROM rollup_hour WHERE bucket = ?{target_sql}",
                [day, *target_params],
            )
            for tid, blob in rows:
                total = totals.setdefault(tid, _Totals())
                for offset, entry in packed.decode(blob, True, _HOURS.v1_unit_us).items():
                    hour = day + offset * _HOUR
                    if hour not in hour_histograms:
                        continue
                    if hour in whole_hours:
                        total.add(entry.probes, entry.failures, entry.degraded, entry.maintenance, 0, {})
                    total.add(0, 0, 0, 0, entry.latency_max_us, entry.histogram)
                await slicer.tick()
        for hour, (low, high) in sorted(partial.items()):
            rows = await reader.execute_fetchall(
                f"SELECT target_id, minutes FROM rollup_minute WHERE bucket = ?{target_sql}",
                [hour, *target_params],
            )
            for tid, blob in rows:
                total = totals.setdefault(tid, _Totals())
                for offset, entry in packed.decode(blob, False, _MINUTES.v1_unit_us).items():
                    if low <= hour + offset * _MINUTE < high:
                        total.add(entry.probes, entry.failures, entry.degraded, entry.maintenance, 0, {})
                await slicer.tick()
        # Closed entries of rows still open (rollup_open), then what is still in memory (open entries).
        rows = await reader.execute_fetchall(
            "SELECT size, bucket, target_id, probes, failures, degraded, maintenance, latency_sum_us,"
            " latency_max_us, histogram FROM rollup_open WHERE size IN (?, ?) AND bucket >= ?"
            f" AND bucket < ?{target_sql}",
            [_MINUTE, _HOUR, _floor(start_s, _HOUR), end_s, *target_params],
        )
        for size, bucket, tid, *values, hist in rows:
            entry = packed.Counts()
            _add_values(entry, values, hist)
            (add_minute if size == _MINUTE else add_hour)(tid, bucket, entry)
            await slicer.tick()
        if self._writer is not None:
            wanted = None if target_id is None else target_id
            for memory, add in ((self._minutes, add_minute), (self._hours, add_hour)):
                for (name, bucket), rollup in list(memory.items()):
                    known = self._targets.get(name)
                    if known is None or (wanted is not None and known[0] != wanted):
                        continue
                    if start_s - _HOUR < bucket < end_s:
                        add(known[0], bucket, rollup)
                    await slicer.tick()
        return totals

    async def _downtime(
        self, start_ms: int, end_ms: int, target_id: int | None
    ) -> dict[int, list[tuple[int, int]]]:
        """Incident intervals per target overlapping the window; open ones end at the window end."""
        sql = (
            "SELECT target_id, started_at, ended_at FROM incidents"
            " WHERE started_at < ? AND (ended_at IS NULL OR ended_at > ?)"
        )
        params: list[Any] = [end_ms, start_ms]
        if target_id is not None:
            sql += " AND target_id = ?"
            params.append(target_id)
        intervals: dict[int, list[tuple[int, int]]] = {}
        for tid, started, ended in await self.reader.execute_fetchall(sql, params):
            intervals.setdefault(tid, []).append((started, end_ms if ended is None else ended))
        return intervals

    # --- health, retention, readiness, key/value ------------------------------------------------------

    async def latest_health(self) -> dict[str, Health]:
        """Last known health per target: what is committed, overlaid with what is still buffered."""
        rows = await self.reader.execute_fetchall("SELECT name, health FROM targets WHERE health IS NOT NULL")
        health = {name: _HEALTH_BY_CODE.get(code, Health.UNKNOWN) for name, code in rows}
        health.update(self._last_health)
        return health

    async def run_retention(self, now: datetime | None = None, batch: int = 5000) -> int:
        """Delete expired history in transactions of at most `batch` rows; return how many rows went."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        # Buffered results may already be expired (e.g. after a long lock); let them go in this pass.
        await self.flush()
        now = now or self._clock()
        now_ms = _to_ms(now)
        raw_cutoff = _to_ms(now - self.raw_retention)
        minute_cutoff = _to_ms(now - self.minute_retention) // 1000
        hour_cutoff = _to_ms(now - self.hour_retention) // 1000
        incident_cutoff = now_ms - int(self.hour_retention / _MS)
        statements = [
            # Walk targets so each one costs an index seek, not a scan of the whole raw table.
            "DELETE FROM probe_results WHERE (target_id, at) IN (SELECT r.target_id, r.at FROM targets AS t"
            " CROSS JOIN probe_results AS r ON r.target_id = t.id AND r.at < ?1 LIMIT ?2)",
            # A packed row goes once all of it is expired: its bucket ends at or before the cutoff.
            "DELETE FROM rollup_minute WHERE (bucket, target_id) IN"
            " (SELECT bucket, target_id FROM rollup_minute WHERE bucket <= ?1 LIMIT ?2)",
            "DELETE FROM rollup_hour WHERE rowid IN"
            " (SELECT rowid FROM rollup_hour WHERE bucket <= ?1 LIMIT ?2)",
            "DELETE FROM incidents WHERE id IN (SELECT id FROM incidents"
            " WHERE ended_at IS NOT NULL AND ended_at < ?1 LIMIT ?2)",
        ]
        cutoffs = [raw_cutoff, minute_cutoff - _HOUR, hour_cutoff - _DAY, incident_cutoff]
        deleted = 0
        for sql, cutoff in zip(statements, cutoffs, strict=True):
            while True:
                async with self.transaction() as conn:
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
                await self.connection.execute("PRAGMA incremental_vacuum(1000)")
        return deleted

    async def writable(self) -> bool:
        """Whether a write transaction can start right now (for /readyz); never waits long."""
        if self._writer is None:
            return False
        conn = self._writer
        try:
            async with self._write_lock:
                await conn.execute("PRAGMA busy_timeout = 200")
                try:
                    await conn.execute("BEGIN IMMEDIATE")
                    await conn.execute("ROLLBACK")
                finally:
                    await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        except sqlite3.Error:
            return False
        return True

    async def get_value(self, key: str) -> str | None:
        """A value from the durable key/value table, or None."""
        rows = await self.reader.execute_fetchall("SELECT value FROM kv WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    async def set_value(self, key: str, value: str) -> None:
        """Store a value and make it survive a power cut before returning (e.g. a single-use token)."""
        conn = self.connection
        async with self._write_lock:
            # synchronous=NORMAL may lose the last commits on power loss; this one must not be lost.
            await conn.execute("PRAGMA synchronous = FULL")
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    await conn.execute(
                        "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key)"
                        " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                        (key, value, _to_ms(self._clock())),
                    )
                    await conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
            finally:
                await conn.execute("PRAGMA synchronous = NORMAL")

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "readwrite"
        return f"SqliteStore({str(self.path)!r}, {mode}, pending_writes={self.pending_writes})"


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _reason_code(reason: FailureReason | None) -> int | None:
    if reason is None:
        return None
    # A reason added to the model without a code here is still stored, as the generic one.
    return REASON_CODES.get(reason, REASON_CODES[FailureReason.ERROR])


def _incident(row: Sequence[Any]) -> Incident:
    incident_id, name, started, ended, reason, detail = row
    return Incident(
        id=incident_id,
        target=name,
        started_at=_from_ms(started),
        ended_at=None if ended is None else _from_ms(ended),
        reason=reason,
        detail=detail or "",
    )


def _overlapping(intervals: list[tuple[int, int]] | None, low: int, high: int) -> int:
    if not intervals:
        return 0
    # A zero-length incident inside the window still happened.
    return sum(1 for a, b in intervals if a < high and (b > low or (a == b and a >= low)))
