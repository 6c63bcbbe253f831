"""`tthc-monitor backup FILE`: an online, consistent copy of the store, safe while the daemon runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor.cli.common import add_store_arguments, fail, resolve_store
from monitor.durations import parse_duration
from monitor.store.backup import DEFAULT_PAUSE, DEFAULT_STEP_PAGES, backup_source, backup_store
from monitor.store.base import StoreError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "backup", help="copy the store to FILE (consistent, while the daemon runs; mode 0600)"
    )
    parser.add_argument("file", type=Path, help="the backup file to write (replaced atomically)")
    add_store_arguments(parser)
    parser.add_argument(
        "--step-pages",
        type=int,
        default=DEFAULT_STEP_PAGES,
        help="pages copied per step (default: %(default)s, 1 MiB with 4 KiB pages)",
    )
    parser.add_argument(
        "--pause",
        default=f"{int(DEFAULT_PAUSE * 1000)}ms",
        help="pause between steps, leaving the disk to the daemon (default: %(default)s)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        pause = parse_duration(args.pause).total_seconds()
    except ValueError as exc:
        return fail(f"--pause: {exc}", 2)
    if args.step_pages < 1:
        return fail("--step-pages: must be at least 1", 2)
    found = resolve_store(args)
    if isinstance(found, int):
        return found
    store, _config = found
    try:
        store_path = backup_source(store)
        report = backup_store(store_path, args.file, step_pages=args.step_pages, pause=pause)
    except StoreError as exc:
        return fail(str(exc))
    print(
        f"{store_path} copied to {report.path}: {report.size_bytes / 1_048_576:.1f} MiB, {report.pages} pages"
        f" in {report.steps} steps, {report.seconds:.1f} s"
        f" (longest step {report.longest_step * 1000:.0f} ms); integrity check ok"
    )
    return 0
