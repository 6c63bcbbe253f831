"""The dossier system of `bench/alert_storm.py --end-to-end`, run as `python bench/_storm_simulator.py`.

A `monitor.simulator.Simulator` whose clock stands still (nothing arrives, finishes or changes during the
run) and whose first `--count` dossiers are processing with a due time one hour after `--at` (epoch
seconds, whole): in a continuous calendar with a `1h` threshold they all cross at that instant. The
others are finished. Prints one JSON line (api_base, count) and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.simulator import Simulator
from monitor.simulator.worktime import VN

# How long before its due time each dossier crosses: the threshold the bench configures.
LEAD = timedelta(hours=1)
# The simulator's step while an officer works on a dossier.
_REVIEW = ("300", "Thẩm định, xử lý hồ sơ")


async def serve(count: int, at: float, seed: int) -> None:
    now = datetime.now(VN)
    simulator = Simulator(seed=seed, clock=lambda: now, dossier_count=count * 2, tls=False)
    world = simulator.world
    due = datetime.fromtimestamp(at, VN) + LEAD
    storm = 0
    for dossier in world.dossiers:
        dossier.received_at = dossier.received_at or now - timedelta(days=3)
        if storm < count:
            # In processing, nothing pending: not paused for a supplement, not released.
            dossier.status, dossier.due_at, dossier.step = "processing", due, _REVIEW
            dossier.extend_at = dossier.paused_at = dossier.released_at = dossier.finished_at = None
            dossier.lock_state = ""
            dossier.supplements, dossier.extensions = [], []
            storm += 1
        else:
            dossier.status, dossier.due_at = "done", dossier.due_at or now - timedelta(days=1)
            dossier.finished_at = dossier.released_at = now - timedelta(days=1)
        dossier.touch(now - timedelta(minutes=5))
    world.version += 1
    await simulator.start("127.0.0.1", 0, admin_port=0)
    print(json.dumps({"api_base": simulator.api_base, "count": storm}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--at", type=float, required=True, help="the crossing instant, epoch seconds")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(serve(args.count, args.at, args.seed))


if __name__ == "__main__":
    main()
