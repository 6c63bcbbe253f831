"""How fast does the SQLite store grow? Simulates N targets probed every 10 s and prints bytes per day.

    python bench/store_growth.py                  # 1,000 targets, one simulated day (a few minutes)
    python bench/store_growth.py --hours 2        # quicker; per-day figures are then extrapolated

The failure model is deliberately unkind: isolated blips (timeouts) at --blip-rate, slow (degraded)
replies at --slow-rate, and a --outage-share of targets having one 20-minute outage per day, with
failure/success thresholds 3/2 so state changes and incidents happen as in the daemon. Bytes per table
come from SQLite's dbstat (pages actually used), measured after a checkpoint.

Event-loop blocking: while each flush runs, a sampler task yields with `sleep(0)` in a loop and records
how long the loop was away between its turns, i.e. the longest synchronous stretch of store work. Run
with `--flush-every 1` for the daemon's cadence (slower: one flush per simulated second).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.store import ProbeResult, SqliteStore

OK = ProbeOutcome(success=True, status_code=200)
SLOW = ProbeOutcome(success=True, degraded=True, reason=FailureReason.SLOW, status_code=200)
TIMEOUT = ProbeOutcome(success=False, reason=FailureReason.TIMEOUT, detail="timed out")
TABLES = (
    "probe_results",
    "rollup_minute",
    "rollup_hour",
    "sqlite_autoindex_rollup_hour_1",
    "rollup_hour_target",
    "rollup_open",
    "targets",
    "incidents",
)
INDEXES = ("sqlite_autoindex_rollup_hour_1", "rollup_hour_target")


class _Target:
    __slots__ = ("failures", "health", "name", "offset", "outage", "successes")

    def __init__(self, name: str, offset: float, outage: tuple[float, float] | None) -> None:
        self.name = name
        self.offset = offset
        self.outage = outage
        self.health = Health.UNKNOWN
        self.failures = 0
        self.successes = 0

    def observe(self, success: bool) -> bool:
        """Thresholds 3 failures / 2 successes, like the daemon's defaults; True when health changed."""
        previous = self.health
        if success:
            self.successes, self.failures = self.successes + 1, 0
            if self.health is not Health.UP and (self.health is Health.UNKNOWN or self.successes >= 2):
                self.health = Health.UP
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= 3 or self.health is Health.UNKNOWN:
                self.health = Health.DOWN
        return self.health is not previous


async def simulate(args: argparse.Namespace, path: Path) -> None:
    rng = random.Random(args.seed)
    start = datetime(2026, 3, 2, tzinfo=UTC)
    seconds = int(args.hours * 3600)
    clock_now = [start]
    store = SqliteStore(path, clock=lambda: clock_now[0], flush_interval=3600)
    await store.open()
    targets = []
    for i in range(args.targets):
        outage = None
        if rng.random() < args.outage_share:
            begin = rng.uniform(0, max(1.0, seconds - 1200))
            outage = (begin, begin + 1200)
        targets.append(_Target(f"target-{i:04d}", rng.uniform(0, args.interval), outage))
    incidents: dict[str, int] = {}
    flushing = [False]
    gaps: list[float] = []
    flush_times: list[float] = []

    async def sample() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0)
            if flushing[0]:
                gaps.append(time.perf_counter() - t)

    sampler = asyncio.create_task(sample())
    recorded = 0
    began = time.perf_counter()
    record_time = 0.0
    for tick in range(0, seconds, args.interval):
        for target in targets:
            offset = tick + target.offset
            at = start + timedelta(seconds=offset)
            in_outage = target.outage is not None and target.outage[0] <= offset < target.outage[1]
            if in_outage or rng.random() < args.blip_rate:
                outcome, duration = TIMEOUT, 10.0
            elif rng.random() < args.slow_rate:
                outcome, duration = SLOW, rng.uniform(2.0, 4.0)
            else:
                outcome, duration = OK, rng.lognormvariate(-2.5, 0.4)
            changed = target.observe(outcome.success)
            t = time.perf_counter()
            store.record(ProbeResult(target.name, at, duration, outcome, target.health, False, changed))
            record_time += time.perf_counter() - t
            recorded += 1
            if changed and target.health is Health.DOWN:
                incidents[target.name] = await store.open_incident(target.name, at, "timeout", "")
            elif changed and target.name in incidents:
                await store.close_incident(incidents.pop(target.name), at)
        if tick % args.flush_every == 0:
            clock_now[0] = start + timedelta(seconds=tick)
            flushing[0] = True
            t = time.perf_counter()
            await store.flush()
            flush_times.append(time.perf_counter() - t)
            flushing[0] = False
    clock_now[0] = start + timedelta(seconds=seconds)
    await store.flush()
    sampler.cancel()
    if gaps:
        ordered = sorted(gaps)

        def ms(quantile: float) -> str:
            return f"{ordered[min(len(ordered) - 1, int(len(ordered) * quantile))] * 1e3:.3f} ms"

        print(
            f"event loop blocked during flushes ({len(flush_times)} flushes, {len(gaps):,} samples):"
            f" p50 {ms(0.5)}, p99 {ms(0.99)}, p99.9 {ms(0.999)}, max {ordered[-1] * 1e3:.2f} ms;"
            f" flush wall time max {max(flush_times) * 1e3:.0f} ms"
        )
    elapsed = time.perf_counter() - began
    t = time.perf_counter()
    reports = await store.uptime_all(start, clock_now[0])
    print(f"uptime_all over the whole run: {len(reports)} targets in {time.perf_counter() - t:.2f} s")
    await store.close()
    report(args, path, recorded, elapsed, record_time)


def report(args: argparse.Namespace, path: Path, recorded: int, elapsed: float, record_time: float) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in TABLES
            if table in tables
        }
    finally:
        conn.close()
    days = args.hours / 24
    file_size = path.stat().st_size
    label = "" if days == 1 else f" (extrapolated from {args.hours:g} h)"
    print(f"{args.targets} targets every {args.interval} s for {args.hours:g} h: {recorded:,} results")
    print(f"simulation {elapsed:.1f} s, record() {record_time / recorded * 1e6:.1f} us per call")
    print(f"file size {file_size / 1e6:.1f} MB; per day{label}: {file_size / days / 1e6:.1f} MB")
    for table in TABLES:
        size = sizes.get(table, 0)
        count = rows.get(table)
        per_row = f", {size / count:.0f} B/row" if count else ""
        count_text = f"{count:,} rows" if count is not None else "index"
        print(f"  {table:20} {count_text:>16}  {size / days / 1e6:8.2f} MB/day{per_row}")
    raw = sizes.get("probe_results", 0) / days
    # Staged entries of the open hour and day: a fixed amount, not per day of retention.
    minute = sizes.get("rollup_minute", 0) / days
    hour = sum(sizes.get(name, 0) for name in ("rollup_hour", *INDEXES)) / days
    fixed = sizes.get("targets", 0) + sizes.get("rollup_open", 0) + sizes.get("incidents", 0) / days * 730
    # Packed rows fill up over their hour/day: only a run of whole days measures their real size.
    steady = raw * 7 + minute * 90 + hour * 730 + fixed
    exact = "" if args.hours % 24 == 0 else " (rollup rows not full: run whole days for a real figure)"
    print(
        f"steady state with default retention (raw 7 d, minute 90 d, hour 730 d): {steady / 1e9:.2f} GB"
        f"{exact}; linear in targets"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=10, help="seconds between probes of a target")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--blip-rate", type=float, default=0.002, help="share of isolated failed probes")
    parser.add_argument("--slow-rate", type=float, default=0.005, help="share of slow (degraded) replies")
    parser.add_argument("--outage-share", type=float, default=0.05, help="targets with a 20 min outage")
    parser.add_argument("--flush-every", type=int, default=10, help="simulated seconds between flushes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", type=Path, help="keep the database here instead of a temporary directory")
    args = parser.parse_args()
    if args.db:
        asyncio.run(simulate(args, args.db))
        return
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(simulate(args, Path(directory) / "bench.db"))


if __name__ == "__main__":
    main()
