"""Running the simulator as a process: `run_forever` and the command-line `main`.

The lead wires `tthc-monitor simulator --listen 127.0.0.1:9480` to `main(argv)` (or calls
`add_arguments` on its own sub-parser and then `run_from_args`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from monitor.configtypes import split_listen
from monitor.durations import parse_duration
from monitor.simulator.faults import FAULTS, ScheduledFault
from monitor.simulator.server import DEFAULT_PASSWORD, Simulator
from monitor.simulator.worktime import VN

__all__ = [
    "accelerated_clock",
    "add_arguments",
    "main",
    "parse_schedule_entry",
    "run_forever",
    "run_from_args",
]


def accelerated_clock(speed: float, start: datetime | None = None) -> Callable[[], datetime]:
    """A clock that starts at `start` (default now) and runs `speed` times faster than real time."""
    real_start = datetime.now(VN)
    sim_start = start or real_start

    def clock() -> datetime:
        return sim_start + (datetime.now(VN) - real_start) * speed

    return clock


def parse_schedule_entry(text: str) -> ScheduledFault:
    """`fault:start[:duration]`, e.g. `down:10m:2m` (down from 10 minutes after start, for 2)."""
    name, _, rest = text.partition(":")
    start, _, duration = rest.partition(":")
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; expected one of {', '.join(FAULTS)}")
    return ScheduledFault(name, parse_duration(start or "0s"), parse_duration(duration) if duration else None)


async def run_forever(
    listen: str = "127.0.0.1:9480",
    *,
    admin_port: int | None = None,
    tls_port: int | None = None,
    seed: int = 1,
    dossier_count: int = 300,
    state_dir: Path | None = None,
    speed: float = 1.0,
    schedule: Iterable[ScheduledFault | tuple[Any, ...]] = (),
    username: str = "admin",
    password: str = DEFAULT_PASSWORD,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    code_prefix: str = "",
) -> None:
    """Start a simulator, print its URLs and serve until SIGINT / SIGTERM (or `stop` is set).

    With a fixed port P the admin listener defaults to P+1 and the TLS one to P+2.
    """
    host, port = split_listen(listen)
    if admin_port is None:
        admin_port = port + 1 if port else 0
    if tls_port is None:
        tls_port = port + 2 if port else 0
    clock = accelerated_clock(speed) if speed != 1.0 else None
    simulator = Simulator(
        seed=seed,
        clock=clock,
        dossier_count=dossier_count,
        username=username,
        password=password,
        state_dir=state_dir,
        schedule=schedule,
        code_prefix=code_prefix,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Signal handlers only work on the main thread's loop (not in a test's helper thread, not on
        # Windows); there the caller stops the simulator through `stop` instead.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    await simulator.start(host, port, admin_port=admin_port, tls_port=tls_port)
    try:
        print(f"tthc-monitor simulator: {len(simulator.world.dossiers)} dossiers, seed {seed}", file=out)
        for name, url in simulator.urls().items():
            print(f"  {name:12} {url}", file=out)
        print(f"  {'username':12} {username}  (password: the one given, default for the demo)", file=out)
        print(f"  {'groupId':12} {simulator.group_id}", file=out, flush=True)
        await stop.wait()
    finally:
        await simulator.stop()
        for signum in installed:
            loop.remove_signal_handler(signum)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:9480", help="public host:port (default %(default)s)")
    parser.add_argument("--admin-port", type=int, default=None, help="admin port (default: listen port + 1)")
    parser.add_argument("--tls-port", type=int, default=None, help="TLS port (default: listen port + 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dossiers", type=int, default=300, help="open dossiers to generate")
    parser.add_argument("--state-dir", type=Path, default=None, help="where sim-ca.pem is written")
    parser.add_argument(
        "--code-prefix",
        default="",
        help="put before every dossier code (distinct codes per simulator)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="simulated time per real second")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="FAULT:START[:DURATION]",
        help="schedule a fault, e.g. down:10m:2m (repeatable)",
    )


def run_from_args(args: argparse.Namespace) -> int:
    try:
        schedule = [parse_schedule_entry(entry) for entry in args.fault]
    except ValueError as exc:
        print(f"tthc-monitor: --fault: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_forever(
                args.listen,
                admin_port=args.admin_port,
                tls_port=args.tls_port,
                seed=args.seed,
                dossier_count=args.dossiers,
                state_dir=args.state_dir,
                speed=args.speed,
                schedule=schedule,
                code_prefix=args.code_prefix,
            )
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tthc-monitor simulator", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
