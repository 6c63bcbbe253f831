"""Writing one flush: closed rollup rows packed and written once, open ones staged, raw rows, health.

The packed rows that close are read and encoded before the transaction in sliced steps (the event loop is
busy for about a millisecond at a time); the transaction then only writes. A restart reads staged and
already packed rows back before merging, so nothing counts twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.store import latency, packed
from monitor.store.buffer import Batch, Rollup, floor
from monitor.store.engine import POSTGRESQL, dialect_of, pick
from monitor.store.rollups import MINUTE_PACKS, PACK_SPECS, Pack, PackSpec, Slicer, add_values
from monitor.store.targets import TargetRow, load_targets, resolve_targets

__all__ = ["Closing", "batch_entries", "closes_rows", "prepare_closing", "staging_params", "write_batch"]


# Staging closed entries of open packed rows: late entries add up, histogram encodings concatenate.
_STAGE = (
    "INSERT INTO rollup_open (size, bucket, target_id, probes, failures, degraded, maintenance,"
    " latency_sum_us, latency_max_us, histogram) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (size, bucket, target_id) DO UPDATE SET probes = rollup_open.probes + excluded.probes,"
    " failures = rollup_open.failures + excluded.failures,"
    " degraded = rollup_open.degraded + excluded.degraded,"
    " maintenance = rollup_open.maintenance + excluded.maintenance,"
    " latency_sum_us = rollup_open.latency_sum_us + excluded.latency_sum_us,"
)
_STAGE_SQLITE = (
    _STAGE + " latency_max_us = max(rollup_open.latency_max_us, excluded.latency_max_us),"
    " histogram = CAST(rollup_open.histogram || excluded.histogram AS BLOB)"
)
_STAGE_POSTGRESQL = (
    _STAGE + " latency_max_us = GREATEST(rollup_open.latency_max_us, excluded.latency_max_us),"
    " histogram = rollup_open.histogram || excluded.histogram"
)


def batch_entries(batch: Batch, spec: PackSpec) -> dict[tuple[str, int], Rollup]:
    """The batch's closed entries of one packed table."""
    return batch.minutes if spec is MINUTE_PACKS else batch.hours


@dataclass(slots=True)
class Closing:
    """Packed rows of one table written by this flush: their row buckets, (row, target, totals, blob), and
    the staged entries read into them ((bucket, target id); deleted one by one on PostgreSQL, where a
    replica may stage another entry of the same row meanwhile, which must stay for its next flush)."""

    buckets: set[int]
    rows: list[tuple[int, str, tuple[int, ...], bytes]]
    staged: list[tuple[int, int]] = field(default_factory=list)


def closes_rows(open_rows: Mapping[str, set[int]], batch: Batch, now_s: int) -> bool:
    """Whether this flush packs a row: a staged row is over, or the batch brings entries of one."""
    for spec in PACK_SPECS:
        if any(bucket + spec.row_size <= now_s for bucket in open_rows[spec.table]):
            return True
        if any(
            floor(bucket, spec.row_size) + spec.row_size <= now_s for _, bucket in batch_entries(batch, spec)
        ):
            return True
    return False


async def prepare_closing(
    reader: Any,
    open_rows: Mapping[str, set[int]],
    targets: dict[str, TargetRow],
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
        staged: list[tuple[int, int]] = []

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
                    staged.append((bucket, tid))
                    if tid not in id_names:
                        id_names = await _learn_targets(reader, targets)
                    add_values(entry(row, id_names[tid], offset), values, hist)
                    await slicer.tick()
            for tid, blob in await reader.execute_fetchall(
                f"SELECT target_id, {spec.blob} FROM {spec.table} WHERE bucket = ?", (row,)
            ):
                # Already packed (late results, or a row closed before a restart): merge, rewrite.
                if tid not in id_names:
                    id_names = await _learn_targets(reader, targets)
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
        closing[spec.table] = Closing(buckets, rows, staged)
    return closing


async def _learn_targets(conn: Any, targets: dict[str, TargetRow]) -> dict[int, str]:
    """Targets another writer (a replica) added since this store opened: into the cache, committed."""
    targets.update({name: row for name, row in (await load_targets(conn)).items() if name not in targets})
    return {known[0]: name for name, known in targets.items()}


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
    conn: Any,
    batch: Batch,
    closing: dict[str, Closing],
    staged: list[tuple[int, int, str, int, int, int, int, int, int, bytes]],
    targets: Mapping[str, TargetRow],
) -> dict[str, TargetRow]:
    """Write one batch inside the caller's transaction; returns the targets to add to the cache."""
    ids, added = await resolve_targets(conn, targets, batch.first_seen)

    def target_id(name: str) -> int:
        # An entry's target is in this batch or was committed by an earlier one.
        return ids[name] if name in ids else targets[name][0]

    await conn.executemany(
        "INSERT INTO probe_results (target_id, at, duration_us, health, success, degraded,"
        " in_maintenance, changed, reason, status_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (target_id, at) DO NOTHING",
        [(ids[row[0]], *row[1:]) for row in batch.raw],
    )
    # Late entries for a minute or hour already staged add up (histogram encodings concatenate).
    await conn.executemany(
        pick(dialect_of(conn), sqlite=_STAGE_SQLITE, postgresql=_STAGE_POSTGRESQL),
        [(size, bucket, target_id(name), *rest) for size, bucket, name, *rest in staged],
    )
    for spec in PACK_SPECS:
        rows = closing[spec.table]
        if spec.histograms:
            await conn.executemany(
                "INSERT INTO rollup_hour (bucket, target_id, probes, failures, degraded,"
                " maintenance, latency_max_us, hours) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (bucket, target_id) DO UPDATE SET probes = excluded.probes,"
                " failures = excluded.failures, degraded = excluded.degraded,"
                " maintenance = excluded.maintenance, latency_max_us = excluded.latency_max_us,"
                " hours = excluded.hours",
                [(row, target_id(name), *totals, blob) for row, name, totals, blob in rows.rows],
            )
        else:
            await conn.executemany(
                "INSERT INTO rollup_minute (bucket, target_id, minutes) VALUES (?, ?, ?)"
                " ON CONFLICT (bucket, target_id) DO UPDATE SET minutes = excluded.minutes",
                [(row, target_id(name), blob) for row, name, _, blob in rows.rows],
            )
        if dialect_of(conn) == POSTGRESQL:
            await conn.executemany(
                "DELETE FROM rollup_open WHERE size = ? AND bucket = ? AND target_id = ?",
                [(spec.entry_size, bucket, tid) for bucket, tid in rows.staged],
            )
            continue
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
    # In id order: two replicas updating the same targets (a takeover) lock them in one order.
    await conn.executemany(
        "UPDATE targets SET health = ? WHERE id = ?", sorted(changed_health, key=lambda row: row[1])
    )
    return added
