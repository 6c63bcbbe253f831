"""`tthc-monitor dossiers`: open dossiers and their deadline state, read from the store (read-only).

Works while the daemon runs: it opens the store (the SQLite file or PostgreSQL) read-only and computes
states for now.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from monitor.calendar import Calendars
from monitor.cli.common import add_store_arguments, fail, resolve_store
from monitor.dossiers.store import STATES, DossierRow, DossierStore
from monitor.durations import format_duration
from monitor.store.config import StoreConfig

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser = subparsers.add_parser("dossiers", help="open dossiers and their deadline state, from the store")
    parser.add_argument("--state", choices=STATES, default=None, help="only this state (default: open ones)")
    parser.add_argument("--unit", default=None, help="only this unit code")
    parser.add_argument(
        "--limit", type=int, default=1000, help="at most this many rows (default: %(default)s)"
    )
    add_store_arguments(parser, "config file, to find the store and calendars")
    return parser


def run(args: argparse.Namespace, *, now: datetime | None = None) -> int:
    if args.limit < 1:
        return fail("--limit: must be at least 1", 2)
    found = resolve_store(args)
    if isinstance(found, int):
        return found
    store, config = found
    calendars = Calendars(config.calendars, config.zone) if config else Calendars()
    zone = config.zone if config else ZoneInfo("Asia/Ho_Chi_Minh")
    return asyncio.run(_print(store, args, calendars, zone, now or datetime.now(UTC)))


async def _print(
    store_config: StoreConfig, args: argparse.Namespace, calendars: Calendars, zone: ZoneInfo, now: datetime
) -> int:
    from monitor.store import StoreError
    from monitor.store.open import open_readonly_store

    try:
        store = await open_readonly_store(store_config)
    except StoreError as exc:
        print(f"tthc-monitor: {exc}", file=sys.stderr)
        return 1
    try:
        rows: list[DossierRow] = []
        after = None
        dossiers = DossierStore(store)
        while len(rows) < args.limit:
            page = await dossiers.list_dossiers(
                now, state=args.state, unit=args.unit, after=after, limit=min(500, args.limit - len(rows))
            )
            rows.extend(page)
            if len(page) < min(500, args.limit - len(rows) + len(page)):
                break
            after = page[-1].code
    finally:
        await store.close()
    print(f"{'CODE':<34} {'UNIT':<14} {'STATE':<10} {'DUE':<16} {'LEFT':>9}  ASSIGNEE")
    for row in rows:
        due = row.deadline_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") if row.deadline_at else "-"
        left = "-"
        if row.deadline_at is not None and row.status == "open":
            calendar = calendars.for_dossier(row.unit_code, row.procedure_code)
            seconds = calendar.working_time_between(now, row.deadline_at).total_seconds()
            left = ("-" if seconds < 0 else "") + format_duration(abs(seconds))
        print(f"{row.code:<34} {row.unit_code:<14} {row.state:<10} {due:<16} {left:>9}  {row.assignee_name}")
    print(f"{len(rows)} dossier(s)")
    return 0
