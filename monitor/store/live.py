"""The daemon's open minute and hour rollups, copied to `rollup_live` with every heartbeat.

Open rollups live only in the daemon's memory until their minute or hour closes, so another process
(`tthc-monitor uptime --store`, the report) used to see no latency histogram and no probe counts for the
current hour: p50/p95 showed `-` minutes into a run while the API, reading the daemon's memory, showed
them. The copy gives both the same figures (the CLI lags by at most one heartbeat).

Never counted twice: the flush that moves an entry out of memory (into `rollup_open` or a packed row)
deletes its copy in the same transaction (`drop_closed`), and the daemon itself reads memory, never this
table. A copy left by a crash is dropped when the next daemon opens the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

import aiosqlite

from monitor.store import latency, packed

__all__ = ["LiveEntry", "drop_closed", "read_live", "write_live"]

# (size, bucket, target id, counts)
LiveEntry = tuple[int, int, int, packed.Counts]

_HOUR = 3600
# Rows encoded between two yields to the event loop (about a millisecond's worth).
_ROWS_PER_SLICE = 300


async def write_live(
    conn: aiosqlite.Connection,
    tables: Iterable[tuple[int, Mapping[tuple[str, int], packed.Counts]]],
    target_id: Callable[[str], int | None],
) -> None:
    """Replace the copy by the open entries of `tables` ((entry size, {(target, bucket): counts}))."""
    rows = []
    unknown: list[tuple[int, str, int, packed.Counts]] = []
    for size, table in tables:
        # Listed before the first await: `record` adds entries meanwhile (a later beat copies them).
        for index, ((name, bucket), counts) in enumerate(list(table.items())):
            tid = target_id(name)
            if tid is None:
                unknown.append((size, name, bucket, counts))
            else:
                rows.append(_row(size, bucket, tid, counts))
            if index % _ROWS_PER_SLICE == _ROWS_PER_SLICE - 1:
                # About a millisecond of encoding at a time: probes must not wait for the copy.
                await asyncio.sleep(0)
    if unknown:
        # Targets inserted by this very transaction: the store's cache learns them after the commit.
        ids = dict(await conn.execute_fetchall("SELECT name, id FROM targets"))
        rows.extend(
            _row(size, bucket, ids[name], counts) for size, name, bucket, counts in unknown if name in ids
        )
    await conn.execute("DELETE FROM rollup_live")
    await conn.executemany(
        "INSERT INTO rollup_live (size, bucket, target_id, probes, failures, degraded, maintenance,"
        " latency_sum_us, latency_max_us, histogram) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _row(size: int, bucket: int, tid: int, counts: packed.Counts) -> tuple[object, ...]:
    return (
        size,
        bucket,
        tid,
        counts.probes,
        counts.failures,
        counts.degraded,
        counts.maintenance,
        counts.latency_sum_us,
        counts.latency_max_us,
        # Only hours keep histograms (as in rollup_open): minute latencies are never read.
        latency.encode(counts.histogram) if counts.histogram and size == _HOUR else b"",
    )


async def drop_closed(conn: aiosqlite.Connection, now_s: int | None) -> None:
    """Delete the copies of entries closed by `now_s` (all of them when None: the store is closing)."""
    if now_s is None:
        await conn.execute("DELETE FROM rollup_live")
    else:
        await conn.execute("DELETE FROM rollup_live WHERE bucket + size <= ?", (now_s,))


async def read_live(
    reader: aiosqlite.Connection, low_s: int, high_s: int, target_id: int | None
) -> list[LiveEntry]:
    """Copied entries with `low_s < bucket < high_s`, as the daemon's memory would give them."""
    sql = (
        "SELECT size, bucket, target_id, probes, failures, degraded, maintenance, latency_sum_us,"
        " latency_max_us, histogram FROM rollup_live WHERE bucket > ? AND bucket < ?"
    )
    params: list[int] = [low_s, high_s]
    if target_id is not None:
        sql += " AND target_id = ?"
        params.append(target_id)
    entries = []
    for (
        size,
        bucket,
        tid,
        probes,
        failures,
        degraded,
        maintenance,
        total,
        top,
        hist,
    ) in await reader.execute_fetchall(sql, params):
        counts = packed.Counts()
        counts.probes, counts.failures, counts.degraded, counts.maintenance = (
            probes,
            failures,
            degraded,
            maintenance,
        )
        counts.latency_sum_us, counts.latency_max_us = total, top
        if hist:
            latency.decode(hist, counts.histogram)
        entries.append((size, bucket, tid, counts))
    return entries
