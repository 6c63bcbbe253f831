"""Probe results and rollups: one flush of the buffer into the database, and their retention.

Why it looks like this (Uptime Kuma's heartbeat table grew to GBs and DB work caused false downtime):
successes that change nothing are folded into per-minute and per-hour rollups; the raw table keeps
failures, degraded and maintenance results, state changes and one sample per target per
`success_sample_interval`. Rollups are packed (packed.py): one row per target per hour holding its
minutes, one per target per UTC day holding its hours (with day totals as columns). A packed row is written
once, when its hour or day closes; its closed entries wait in `rollup_open` until then, and a restart reads
them back before merging, so nothing counts twice.

A flush reads and encodes the packed rows that close before its transaction (sliced, packing.py), then
writes raw rows, staged entries, closed packed rows and health in one transaction with the batch hooks
(the heartbeat). A failed commit puts the batch back into memory; the next flush retries it. On
PostgreSQL several replicas close the same hour's rows: there the reads happen inside the transaction,
after a transaction advisory lock, so each closer sees what the previous one committed.

Uptime precision (reports.py): counts are exact to the minute while minute rollups are kept (to the hour
after); latency percentiles and the maximum come from hour histograms; stored maxima are rounded up by at
most 4.4 % and latency sums read back within 2.2 % (packed.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from monitor.model import Health
from monitor.store import incidents, live
from monitor.store.buffer import HEALTH_CODES, Batch, WriteBuffer, floor
from monitor.store.engine import POSTGRESQL, SQLITE, lock_key
from monitor.store.packing import batch_entries, closes_rows, prepare_closing, staging_params, write_batch
from monitor.store.rollups import PACK_SPECS
from monitor.store.targets import TargetRow

__all__ = ["RETENTION", "BatchHook", "flush_batch", "health_by_target", "load_open_rows"]

# Work done inside every flush transaction (conn, now in epoch seconds, closing): the heartbeat.
BatchHook = Callable[[Any, int, bool], Awaitable[None]]

_HEALTH_BY_CODE = {code: health for health, code in HEALTH_CODES.items()}

# Expired history, deleted a batch at a time (?1 the cutoff, ?2 the batch size): raw results, minute
# packs, day packs, closed incidents, in that order.
RETENTION: dict[str, tuple[str, ...]] = {
    SQLITE: (
        # Walk targets so each one costs an index seek, not a scan of the whole raw table.
        "DELETE FROM probe_results WHERE (target_id, at) IN (SELECT r.target_id, r.at FROM targets AS t"
        " CROSS JOIN probe_results AS r ON r.target_id = t.id AND r.at < ?1 LIMIT ?2)",
        # A packed row goes once all of it is expired: its bucket ends at or before the cutoff.
        "DELETE FROM rollup_minute WHERE (bucket, target_id) IN"
        " (SELECT bucket, target_id FROM rollup_minute WHERE bucket <= ?1 LIMIT ?2)",
        "DELETE FROM rollup_hour WHERE rowid IN (SELECT rowid FROM rollup_hour WHERE bucket <= ?1 LIMIT ?2)",
        incidents.RETENTION,
    ),
    POSTGRESQL: (
        # The planner walks the (target_id, at) primary key on its own; ctid is the row's address.
        "DELETE FROM probe_results WHERE ctid IN (SELECT ctid FROM probe_results WHERE at < ?1 LIMIT ?2)",
        "DELETE FROM rollup_minute WHERE ctid IN"
        " (SELECT ctid FROM rollup_minute WHERE bucket <= ?1 LIMIT ?2)",
        "DELETE FROM rollup_hour WHERE ctid IN (SELECT ctid FROM rollup_hour WHERE bucket <= ?1 LIMIT ?2)",
        incidents.RETENTION,
    ),
}

Transaction = Callable[[str], AbstractAsyncContextManager[Any]]


async def load_open_rows(reader: Any) -> dict[str, set[int]]:
    """Row buckets (hours of minutes, days of hours) with entries waiting in `rollup_open`."""
    open_rows: dict[str, set[int]] = {spec.table: set() for spec in PACK_SPECS}
    for spec in PACK_SPECS:
        for (bucket,) in await reader.execute_fetchall(
            "SELECT DISTINCT bucket - bucket % ? FROM rollup_open WHERE size = ?",
            (spec.row_size, spec.entry_size),
        ):
            open_rows[spec.table].add(bucket)
    return open_rows


async def flush_batch(
    reader: Any,
    transaction: Transaction,
    buffer: WriteBuffer,
    open_rows: dict[str, set[int]],
    targets: dict[str, TargetRow],
    hooks: Sequence[BatchHook],
    dialect: str,
    run_id: int | None,
    now_s: int,
    force: bool,
) -> None:
    """Commit one batch taken from `buffer` (`force`: the open minutes and hours too, on close)."""
    due = any(bucket + spec.row_size <= now_s for spec in PACK_SPECS for bucket in open_rows[spec.table])
    batch = buffer.take(now_s, force, due)
    if batch is None:
        return
    shared = dialect == POSTGRESQL
    try:
        if not shared:
            # One writer per file: read and encode before the write lock, in slices (packing.py).
            closing = await prepare_closing(reader, open_rows, targets, batch, now_s)
            staged = await staging_params(batch, closing)
        async with transaction("flush") as conn:
            if shared:
                # Replicas close the same hour's rows (every target's staged entries, theirs too):
                # one at a time, each reading what the previous one committed, so none counts twice.
                if closes_rows(open_rows, batch, now_s):
                    await conn.execute(f"SELECT pg_advisory_xact_lock({lock_key('rollup-close')})")
                closing = await prepare_closing(conn, open_rows, targets, batch, now_s)
                staged = await staging_params(batch, closing)
            added = await write_batch(conn, batch, closing, staged, targets)
            # Copies of the entries this batch closes go with them (all on close): see live.py.
            await live.drop_closed(conn, run_id, None if force else now_s)
            for hook in hooks:
                await hook(conn, now_s, force)
    except BaseException:
        buffer.put_back(batch)
        raise
    buffer.committed()
    targets.update(added)
    _note_open_rows(open_rows, batch, closing)


def _note_open_rows(open_rows: dict[str, set[int]], batch: Batch, closing: Mapping[str, Any]) -> None:
    for spec in PACK_SPECS:
        rows = open_rows[spec.table]
        rows.update(floor(bucket, spec.row_size) for _, bucket in batch_entries(batch, spec))
        rows.difference_update(closing[spec.table].buckets)


async def health_by_target(reader: Any, buffered: Mapping[str, Health]) -> dict[str, Health]:
    """Last known health per target: what is committed, overlaid with what is still buffered."""
    rows = await reader.execute_fetchall("SELECT name, health FROM targets WHERE health IS NOT NULL")
    health = {name: _HEALTH_BY_CODE.get(code, Health.UNKNOWN) for name, code in rows}
    health.update(buffered)
    return health
