"""CPU of the SQLite flush path alone, to compare two versions of the store on a busy machine.

    python bench/store_flush.py                  # 1,000 targets x 10 s, 2 simulated hours, a flush per 10 s
    python bench/store_flush.py --targets 200 --hours 1

Only `store.flush()` is timed (`time.process_time`, so aiosqlite's thread counts too): the packed-row
encoding, staging, raw rows and health of each batch, and the hourly packing. Run it from each checkout
in turn, several times interleaved: on a shared 2-vCPU machine one run's noise is about ±15 %.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.model import Health, ProbeOutcome
from monitor.store import ProbeResult, SqliteStore

T0 = datetime(2026, 3, 2, tzinfo=UTC)
OK = ProbeOutcome(success=True)


class Clock:
    """The simulated time the store reads."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def measure(targets: int, hours: float) -> tuple[float, int]:
    """CPU seconds spent in flushes, and how many flushes."""
    clock = Clock()
    steps = int(hours * 360)
    spent = 0.0
    with tempfile.TemporaryDirectory() as folder:
        async with SqliteStore(Path(folder) / "bench.db", clock=clock, flush_interval=3600) as store:
            names = [f"target-{index}" for index in range(targets)]
            for step in range(steps):
                at = T0 + timedelta(seconds=10 * step)
                for name in names:
                    store.record(ProbeResult(name, at, 0.05, OK, Health.UP))
                clock.now = at + timedelta(seconds=10)
                began = time.process_time()
                await store.flush()
                spent += time.process_time() - began
    return spent, steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args()
    spent, flushes = asyncio.run(measure(args.targets, args.hours))
    print(f"flush CPU {spent:.2f} s for {flushes} flushes ({spent / flushes * 1000:.2f} ms each)")


if __name__ == "__main__":
    main()
