"""Writing one flush: closed rollup rows packed and written once, open ones staged, raw rows, health.

The packed rows that close are read and encoded before the transaction in sliced steps (the event loop is
busy for about a millisecond at a time); the transaction then only writes. A restart reads staged and
already packed rows back before merging, so nothing counts twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiosqlite

from monitor.store import latency, packed
from monitor.store.buffer import Batch, Rollup, floor
from monitor.store.engine import POSTGRESQL, SQLITE, dialect_of
from monitor.store.rollups import MINUTE_PACKS, PACK_SPECS, Pack, PackSpec, Slicer, add_values

# STOPGAP (branch pg-replicas) until pg-core merges its own PostgreSQL statements: take pg-core's.
_RAW_COLUMNS = (
    "probe_results (target_id, at, duration_us, health, success, degraded,"
    " in_maintenance, changed, reason, status_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RAW_INSERT = {
    SQLITE: f"INSERT OR IGNORE INTO {_RAW_COLUMNS}",
    POSTGRESQL: f"INSERT INTO {_RAW_COLUMNS} ON CONFLICT DO NOTHING",
}
_STAGE_HEAD = (
    "INSERT INTO rollup_open (size, bucket, target_id, probes, failures, degraded, maintenance,"
    " latency_sum_us, latency_max_us, histogram) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (size, bucket, target_id) DO UPDATE SET "
)
_STAGE_UPSERT = {
    SQLITE: _STAGE_HEAD + "probes = probes + excluded.probes,"
    " failures = failures + excluded.failures, degraded = degraded + excluded.degraded,"
    " maintenance = maintenance + excluded.maintenance,"
    " latency_sum_us = latency_sum_us + excluded.latency_sum_us,"
    " latency_max_us = max(latency_max_us, excluded.latency_max_us),"
    " histogram = CAST(histogram || excluded.histogram AS BLOB)",
    POSTGRESQL: _STAGE_HEAD + "probes = rollup_open.probes + excluded.probes,"
    " failures = rollup_open.failures + excluded.failures,"
    " degraded = rollup_open.degraded + excluded.degraded,"
    " maintenance = rollup_open.maintenance + excluded.maintenance,"
    " latency_sum_us = rollup_open.latency_sum_us + excluded.latency_sum_us,"
    " latency_max_us = GREATEST(rollup_open.latency_max_us, excluded.latency_max_us),"
    " histogram = rollup_open.histogram || excluded.histogram",
}

__all__ = ["Closing", "batch_entries", "prepare_closing", "resolve_targets", "staging_params", "write_batch"]


def batch_entries(batch: Batch, spec: PackSpec) -> dict[tuple[str, int], Rollup]:
    """The batch's closed entries of one packed table."""
    return batch.minutes if spec is MINUTE_PACKS else batch.hours


@dataclass(slots=True)
class Closing:
    """Packed rows of one table written by this flush: their row buckets and (row, target, totals, blob)."""

    buckets: set[int]
    rows: list[tuple[int, str, tuple[int, ...], bytes]]


async def prepare_closing(
    reader: aiosqlite.Connection,
    open_rows: Mapping[str, set[int]],
    targets: Mapping[str, tuple[int, int, int | None]],
    batch: Batch,
    now_s: int,
) -> dict[str, Closing]:
    """Encode every packed row whose hour (minutes) or day (hours) is over: what is staged, what this
    batch brings, and (rarely: late results, a restart) what is already packed for the same row."""
    closing: dict[str, Closing] = {}
    slicer = Slicer()
    id_names: dict[int, str] = {}
    for spec in PACK_SPECS:
        entries = batch_entries(batch, spec)
        buckets = {b for b in open_rows[spec.table] if b + spec.row_size <= now_s}
        buckets.update(
            row
            for row in {floor(bucket, spec.row_size) for _, bucket in entries}
            if row + spec.row_size <= now_s
        )
        if buckets and not id_names:
            id_names = {known[0]: name for name, known in targets.items()}
        packs: dict[tuple[int, str], Pack] = {}

        def entry(
            row: int, name: str, offset: int, packs: dict[tuple[int, str], Pack] = packs
        ) -> packed.Counts:
            pack = packs.setdefault((row, name), {})
            counts = pack.get(offset)
            if counts is None:
                counts = pack[offset] = packed.Counts()
            return counts

        for row in sorted(buckets):
            if row in open_rows[spec.table]:
                for tid, bucket, *values, hist in await reader.execute_fetchall(
                    "SELECT target_id, bucket, probes, failures, degraded, maintenance, latency_sum_us,"
                    " latency_max_us, histogram FROM rollup_open WHERE size = ? AND bucket >= ?"
                    " AND bucket < ?",
                    (spec.entry_size, row, row + spec.row_size),
                ):
                    offset = (bucket - row) // spec.entry_size
                    add_values(entry(row, id_names[tid], offset), values, hist)
                    await slicer.tick()
            for tid, blob in await reader.execute_fetchall(
                f"SELECT target_id, {spec.blob} FROM {spec.table} WHERE bucket = ?", (row,)
            ):
                # Already packed (late results, or a row closed before a restart): merge, rewrite.
                for offset, counts in packed.decode(blob, spec.histograms, spec.v1_unit_us).items():
                    entry(row, id_names[tid], offset).merge(counts)
                await slicer.tick()
        for (name, bucket), rollup in entries.items():
            row = floor(bucket, spec.row_size)
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
        closing[spec.table] = Closing(buckets, rows)
    return closing


async def staging_params(
    batch: Batch, closing: dict[str, Closing]
) -> list[tuple[int, int, str, int, int, int, int, int, int, bytes]]:
    """Rows for `rollup_open`: closed entries of packed rows that are still open (target names)."""
    params = []
    slicer = Slicer()
    for spec in PACK_SPECS:
        closed_rows = closing[spec.table].buckets
        for (name, bucket), r in batch_entries(batch, spec).items():
            if floor(bucket, spec.row_size) in closed_rows:
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


async def write_batch(
    conn: aiosqlite.Connection,
    batch: Batch,
    closing: dict[str, Closing],
    staged: list[tuple[int, int, str, int, int, int, int, int, int, bytes]],
    targets: Mapping[str, tuple[int, int, int | None]],
) -> dict[str, tuple[int, int, int | None]]:
    """Write one batch inside the caller's transaction; returns the targets to add to the cache."""
    ids, added = await resolve_targets(conn, targets, batch.first_seen)

    def target_id(name: str) -> int:
        # An entry's target is in this batch or was committed by an earlier one.
        return ids[name] if name in ids else targets[name][0]

    await conn.executemany(
        _RAW_INSERT[dialect_of(conn)],
        [(ids[row[0]], *row[1:]) for row in batch.raw],
    )
    # Late entries for a minute or hour already staged add up (histogram encodings concatenate).
    await conn.executemany(
        _STAGE_UPSERT[dialect_of(conn)],
        [(size, bucket, target_id(name), *rest) for size, bucket, name, *rest in staged],
    )
    for spec in PACK_SPECS:
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
        known = added.get(name) or targets.get(name)
        if known is not None and known[2] != code:
            changed_health.append((code, ids[name]))
            added[name] = (known[0], known[1], code)
    await conn.executemany("UPDATE targets SET health = ? WHERE id = ?", changed_health)
    return added


async def resolve_targets(
    conn: aiosqlite.Connection, targets: Mapping[str, tuple[int, int, int | None]], first_seen: dict[str, int]
) -> tuple[dict[str, int], dict[str, tuple[int, int, int | None]]]:
    """Target ids for this batch, inserting new targets; `added` is applied to the cache after commit."""
    ids: dict[str, int] = {}
    added: dict[str, tuple[int, int, int | None]] = {}
    for name, first in first_seen.items():
        known = targets.get(name)
        if known is not None and known[1] <= first:
            ids[name] = known[0]
            continue
        rows = await conn.execute_fetchall(
            "INSERT INTO targets (name, first_seen) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
            " SET first_seen = CASE WHEN targets.first_seen < excluded.first_seen THEN targets.first_seen"
            " ELSE excluded.first_seen END RETURNING id, first_seen, health",
            (name, first),
        )
        target_id, stored_first, health = rows[0]
        ids[name] = target_id
        added[name] = (target_id, stored_first, health)
    return ids, added
