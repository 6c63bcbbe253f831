"""Dossier tracking at scale: 100,000 open dossiers from the simulator, synced, evaluated and watched.

    python bench/dossiers.py                 # 100,000 dossiers (about a minute)
    python bench/dossiers.py --dossiers 20000
    python bench/dossiers.py --postgres postgresql://...   # the store on PostgreSQL (a fresh schema)

Prints: full sync time (fetch in pages of 500 + parse + one transaction + engine); within it, the
engine's cold evaluation and scheduling of every dossier (CPU of `DeadlineEngine.track`, the pure part
of `update()`, on a fresh engine in a fresh process: empty calendars and caches); a warm re-evaluation of
every tracked dossier through `update()`; the re-plan of every dossier after a reload declared a day off;
time per published crossing; steady-state CPU with nothing
changing (timer + incremental syncs every --interval seconds); RSS after the first full sync and at the
end. One engine, as in the daemon. The simulator runs in a child process (`python -m monitor.simulator`),
so CPU and RSS are the monitor's own.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from monitor.calendar import CalendarConfig, Calendars, CalendarsConfig, DayEntry
from monitor.dossiers.engine import DeadlineEngine
from monitor.dossiers.store import DossierStore
from monitor.dossiers.sync import SourceTiming, SyncManager
from monitor.events import EventBus
from monitor.simulator import DEFAULT_PASSWORD
from monitor.store import SqliteStore
from probes.sources import OpenCpsSource, OpenCpsSourceConfig

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def rss_mb() -> float:
    """Peak RSS of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class TimedTrack:
    """Wraps an engine's `track` to add up the CPU it takes, and how many dossiers it was given."""

    def __init__(self, engine: DeadlineEngine) -> None:
        self.inner = engine.track
        self.cpu = 0.0
        self.dossiers = 0

    def __call__(self, dossiers, now_ts, *, recorded=None):  # type: ignore[no-untyped-def]
        dossiers = list(dossiers)
        cpu = time.process_time()
        try:
            return self.inner(dossiers, now_ts, recorded=recorded)
        finally:
            # The deferred young-generation collection belongs to the pass that made the garbage work.
            gc.collect(1)
            self.cpu += time.process_time() - cpu
            self.dossiers += len(dossiers)


async def main(count: int, steady_seconds: float, interval: float, postgres: str | None) -> None:
    clock = Clock(datetime.now(HCM))
    folder_sim = tempfile.mkdtemp(prefix="tthc-bench-sim-")
    started = time.perf_counter()
    child = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
        [
            sys.executable,
            "-m",
            "monitor.simulator",
            "--listen",
            "127.0.0.1:0",
            "--admin-port",
            "0",
            "--tls-port",
            "0",
            "--seed",
            "3",
            "--dossiers",
            str(count),
            "--state-dir",
            folder_sim,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    api_base = ""
    for line in child.stdout:
        if line.strip().startswith("api_base"):
            api_base = line.split()[1]
            break
    print(f"simulator (child process): {count:,} dossiers ready in {time.perf_counter() - started:.1f} s")
    try:
        await _measure(clock, api_base, steady_seconds, interval, postgres)
    finally:
        child.terminate()
        child.wait(10)


def _store(folder: str, clock: Clock, postgres: str | None) -> Any:
    if postgres is None:
        return SqliteStore(Path(folder) / "bench.db", clock=clock)
    from monitor.store import PostgresStore

    return PostgresStore(postgres, schema=f"bench_{Path(folder).name.lower()[-12:]}", clock=clock)


def _drop_schema(store: Any, postgres: str | None) -> None:
    if postgres is not None:
        import psycopg

        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {store.engine.schema} CASCADE")


async def _measure(
    clock: Clock, api_base: str, steady_seconds: float, interval: float, postgres: str | None
) -> None:
    rss_before = rss_mb()
    with tempfile.TemporaryDirectory() as folder:
        store = _store(folder, clock, postgres)
        await store.open()
        # The bench reads its events only between steps (the daemon's consumers drain all the time):
        # a queue as large as the storm keeps the engine from waiting on it.
        bus = EventBus(queue_limit=1_000_000)
        events = bus.subscribe("bench")
        dossiers = DossierStore(store)
        await dossiers.load()
        engine = DeadlineEngine(Calendars(), ["2d", "4h"], dossiers, store, bus, clock)
        config = OpenCpsSourceConfig.model_validate(
            {
                "name": "sim",
                "type": "opencps",
                "base_url": api_base,
                "group_id": "35402",
                "username": "admin",
                "password": DEFAULT_PASSWORD,
                "page_size": 500,
                "timeout": "60s",
            }
        )
        manager = SyncManager(
            [OpenCpsSource(config)],
            {"sim": SourceTiming(timedelta(seconds=interval), timedelta(hours=1))},
            dossiers,
            engine,
            bus,
            clock,
        )
        timed = TimedTrack(engine)
        engine.track = timed  # type: ignore[method-assign]
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = await manager.sync_once("sim", full=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        del engine.track
        assert outcome.ok, outcome
        print(
            f"full sync: {outcome.listed:,} listed, {engine.tracked:,} tracked,"
            f" {outcome.published:,} published"
            f" in {wall:.2f} s wall, {cpu:.2f} s CPU"
        )
        print(
            f"  of which evaluation + scheduling of {timed.dossiers:,} dossiers (cold: fresh process,"
            f" empty calendars and caches): {timed.cpu:.3f} s CPU"
            f" ({timed.cpu / max(1, timed.dossiers) * 1e6:.1f} us each,"
            f" {timed.cpu / max(1, timed.dossiers) * 1e5:.2f} s per 100,000)"
        )
        print(f"RSS after the first full sync: {current_rss_mb():.0f} MB (peak so far {rss_mb():.0f} MB)")

        tracked = [t.dossier for t in dossiers.tracked.values() if not t.vanished]
        cpu = time.process_time()
        await engine.update(tracked, clock.now)
        again = time.process_time() - cpu
        print(
            f"re-evaluation of {len(tracked):,} tracked dossiers through update() (warm):"
            f" {again:.3f} s CPU ({again / max(1, len(tracked)) * 1e6:.1f} us each)"
        )
        del tracked

        # A reload declares a day off (the third working day from now): every dossier is re-planned.
        holiday = engine.calendars.default.add_working_time(clock.now, days=3).astimezone(HCM).date()
        declared = Calendars(
            CalendarsConfig(calendars={"default": CalendarConfig(days_off=[DayEntry(date=holiday)])}), HCM
        )
        engine.calendars.adopt(declared)
        wall, cpu = time.perf_counter(), time.process_time()
        published = await engine.replan(now=clock.now)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"re-plan of {engine.tracked:,} dossiers after a reload declared {holiday} a day off:"
            f" {wall:.3f} s wall, {cpu:.3f} s CPU, {published:,} crossings published"
        )

        while events.backlog:
            events._queue.get_nowait()
        # Three days on (the real date may be a weekend, when no working time passes).
        clock.now += timedelta(days=3)
        wall, cpu = time.perf_counter(), time.process_time()
        published = await engine.run_due(clock.now)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        per = cpu / published * 1e6 if published else float("nan")
        print(
            f"three days later: {published:,} crossings published in {wall:.2f} s wall,"
            f" {cpu:.2f} s CPU ({per:.0f} us CPU per crossing)"
        )

        # Steady state: data frozen, the timer and incremental syncs running on their schedule.
        clock.now += timedelta(minutes=1)
        engine.start()
        manager.start()
        # The manager reconciles in full at start: wait for that, then measure the quiet part.
        while manager.stats["sim"].syncs < 2:  # noqa: ASYNC110 - polling a counter, once
            await asyncio.sleep(0.2)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(steady_seconds)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"steady state over {wall:.0f} s (incremental sync every {interval:g} s, timer armed):"
            f" {cpu / wall * 100:.2f} % of one core"
        )
        await manager.stop(5)
        await engine.stop()
        await store.close()
        _drop_schema(store, postgres)
        print(f"RSS at the end: {current_rss_mb():.0f} MB")
    print(f"peak RSS: {rss_mb():.0f} MB (before the first sync: {rss_before:.0f} MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dossiers", type=int, default=100_000)
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of steady state to measure")
    parser.add_argument("--interval", type=float, default=120.0, help="incremental sync interval, seconds")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL (default: a SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.dossiers, args.steady, args.interval, args.postgres))
