"""The daemon's open minute and hour rollups, copied to `rollup_live` with every heartbeat.

Open rollups live only in the daemon's memory until their minute or hour closes, so another process
(`tthc-monitor uptime --store`, the report) used to see no latency histogram and no probe counts for the
current hour: p50/p95 showed `-` minutes into a run while the API, reading the daemon's memory, showed
them. The copy gives both the same figures (the CLI lags by at most one heartbeat).

Never counted twice: the flush that moves an entry out of memory (into `rollup_open` or a packed row)
deletes its copy in the same transaction (`drop_closed`), and the daemon itself reads memory, never this
table.

Several processes on one database (replicas on PostgreSQL): every row carries the run (`monitor_runs`
id, heartbeat.py) that wrote it; a process replaces and drops only its own run's rows, a starting
process deletes the rows of runs that stopped or went silent past their heartbeat (`drop_dead`), and
readers take rows of live runs only, so a crashed run's copy never counts while its rows wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from monitor.store import latency, packed
from monitor.store.monitored import STALE_HEARTBEATS

__all__ = ["LiveEntry", "drop_closed", "drop_dead", "read_live", "write_live"]

# (size, bucket, target id, counts)
LiveEntry = tuple[int, int, int, packed.Counts]

_HOUR = 3600
# A run still running as another process sees it (monitored.STALE_HEARTBEATS intervals; ? is now in ms).
_LIVE_RUN = f"stopped_at IS NULL AND last_seen_at >= ? - heartbeat_ms * {STALE_HEARTBEATS}"
# Rows encoded between two yields to the event loop (about a millisecond's worth).
_ROWS_PER_SLICE = 300


async def write_live(
    conn: Any,
    run_id: int,
    tables: Iterable[tuple[int, Mapping[tuple[str, int], packed.Counts]]],
    target_id: Callable[[str], int | None],
) -> None:
    """Replace `run_id`'s copy by the open entries of `tables` ((entry size, {(target, bucket): counts}))."""
    rows = []
    unknown: list[tuple[int, str, int, packed.Counts]] = []
    for size, table in tables:
        # Listed before the first await: `record` adds entries meanwhile (a later beat copies them).
        for index, ((name, bucket), counts) in enumerate(list(table.items())):
            tid = target_id(name)
            if tid is None:
                unknown.append((size, name, bucket, counts))
            else:
                rows.append(_row(run_id, size, bucket, tid, counts))
            if index % _ROWS_PER_SLICE == _ROWS_PER_SLICE - 1:
                # About a millisecond of encoding at a time: probes must not wait for the copy.
                await asyncio.sleep(0)
    if unknown:
        # Targets inserted by this very transaction: the store's cache learns them after the commit.
        ids = dict(await conn.execute_fetchall("SELECT name, id FROM targets"))
        rows.extend(
            _row(run_id, size, bucket, ids[name], counts)
            for size, name, bucket, counts in unknown
            if name in ids
        )
    await conn.execute("DELETE FROM rollup_live WHERE run_id = ?", (run_id,))
    await conn.executemany(
        "INSERT INTO rollup_live (run_id, size, bucket, target_id, probes, failures, degraded, maintenance,"
        " latency_sum_us, latency_max_us, histogram) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _row(run_id: int, size: int, bucket: int, tid: int, counts: packed.Counts) -> tuple[object, ...]:
    return (
        run_id,
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


async def drop_closed(conn: Any, run_id: int | None, now_s: int | None) -> None:
    """Delete `run_id`'s copies of entries closed by `now_s` (all of them when None: closing).

    Without a run (no heartbeat: tests, tools) this process never wrote a copy: nothing to do.
    """
    if run_id is None:
        return
    if now_s is None:
        await conn.execute("DELETE FROM rollup_live WHERE run_id = ?", (run_id,))
    else:
        await conn.execute("DELETE FROM rollup_live WHERE run_id = ? AND bucket + size <= ?", (run_id, now_s))


async def drop_dead(conn: Any, now_ms: int) -> None:
    """Delete the copies of runs that stopped or went silent past their heartbeat (crashed)."""
    await conn.execute(
        "DELETE FROM rollup_live WHERE run_id IS NULL OR run_id NOT IN (SELECT id FROM monitor_runs"
        f" WHERE {_LIVE_RUN})",
        (now_ms,),
    )


async def read_live(
    reader: Any, low_s: int, high_s: int, target_id: int | None, now_ms: int
) -> list[LiveEntry]:
    """Live runs' copied entries with `low_s < bucket < high_s`, as their memory would give them."""
    sql = (
        "SELECT l.size, l.bucket, l.target_id, l.probes, l.failures, l.degraded, l.maintenance,"
        " l.latency_sum_us, l.latency_max_us, l.histogram FROM rollup_live AS l JOIN monitor_runs AS m"
        f" ON m.id = l.run_id WHERE {_LIVE_RUN} AND l.bucket > ?"
        " AND l.bucket < ?"
    )
    params: list[int] = [now_ms, low_s, high_s]
    if target_id is not None:
        sql += " AND l.target_id = ?"
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
