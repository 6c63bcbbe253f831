"""`tthc-monitor report`: the monthly SLA report from the store (read-only, works beside the daemon).

The report itself is computed in monitor/reports/sla.py and written by monitor/reports/render.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from monitor.calendar import Calendars
from monitor.cli.common import add_store_arguments, fail, resolve_store
from monitor.reports.render import FORMATS, render
from monitor.reports.sla import Month, build_report, parse_month
from monitor.store.config import StoreConfig
from monitor.store.files import write_private_text
from monitor.targets import Target

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "report", help="monthly SLA report: uptime, incidents, MTTR, dossier timeliness per unit"
    )
    parser.add_argument("--month", required=True, help="calendar month in the office's zone, e.g. 2026-10")
    parser.add_argument(
        "--format", choices=tuple(FORMATS), default="md", help="output format (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write to this file (default: stdout)")
    add_store_arguments(parser, "config file, to find the store, time zone and working calendar")
    return parser


def run(args: argparse.Namespace, *, now: datetime | None = None) -> int:
    try:
        month = parse_month(args.month)
    except ValueError as exc:
        return fail(f"--month: {exc}", 2)
    found = resolve_store(args)
    if isinstance(found, int):
        return found
    store, config = found
    zone = config.zone if config else ZoneInfo("Asia/Ho_Chi_Minh")
    calendars = Calendars(config.calendars, zone) if config else Calendars(zone=zone)
    now = now or datetime.now(UTC)
    if month.span(zone).start > now:
        return fail(f"--month: {month} has not started yet", 2)
    configured = list(config.targets) if config else []
    text = asyncio.run(_render(store, month, zone, calendars, configured, now, args.format))
    if isinstance(text, int):
        return text
    out: Path | None = args.out
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    try:
        write_private_text(out, text)
    except OSError as exc:
        return fail(f"--out: cannot write {out}: {exc.strerror or exc}")
    print(f"wrote the {month} report to {out}", file=sys.stderr)
    return 0


async def _render(
    store_config: StoreConfig,
    month: Month,
    zone: ZoneInfo,
    calendars: Calendars,
    configured: list[Target],
    now: datetime,
    form: str,
) -> str | int:
    from monitor.store import StoreError
    from monitor.store.open import open_readonly_store

    try:
        store = await open_readonly_store(store_config)
    except StoreError as exc:
        return fail(str(exc))
    try:
        report = await build_report(
            store, month, zone=zone, calendar=calendars.default, now=now, configured=configured
        )
    finally:
        await store.close()
    return render(report, form)
