"""`tthc-monitor alerts` (what the outbox holds, read-only) and `tthc-monitor notify-test` (a test alert).

`alerts` opens the store read-only, so it is safe while the daemon runs. `notify-test` writes its alert to
the outbox like any other (so it is recorded and shows up in `alerts`) and sends it at once, trying the
person's channels (or `--channel`) in order, each once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO
from zoneinfo import ZoneInfo

from monitor.cli.common import (
    DEFAULT_CONFIG,
    add_store_arguments,
    fail,
    load_or_report,
    resolve_store,
    store_config_of,
    store_path_problem,
)
from monitor.durations import parse_duration
from monitor.store.config import StoreConfig

__all__ = ["PersonLike", "add_parser", "list_alerts", "notify_test", "run"]

_COMMANDS = ("alerts", "notify-test")
_DEFAULT_ZONE = "Asia/Ho_Chi_Minh"


class PersonLike(Protocol):
    """What notify-test needs of a directory entry (alerts.directory.PersonConfig has it)."""

    id: str
    phone: str | None
    zalo_user_id: str | None
    channels: Sequence[str]


def add_parser(subparsers: Any) -> None:
    """Add `alerts` and `notify-test` to the `tthc-monitor` subcommands."""
    alerts = subparsers.add_parser("alerts", help="alerts in the outbox: status, channel, attempts, errors")
    add_store_arguments(alerts)
    alerts.add_argument("--since", default="1d", help="how far back, e.g. 1h, 1d, 7d (default: %(default)s)")
    alerts.add_argument("--status", choices=("pending", "in_flight", "sent", "failed"), default=None)
    alerts.add_argument(
        "--limit", type=int, default=200, help="at most this many rows (default: %(default)s)"
    )

    test = subparsers.add_parser(
        "notify-test", help="send one test alert to a person now, through the outbox"
    )
    test.add_argument("--person", required=True, help="person id from alerts.directory.people")
    test.add_argument("--channel", default=None, help="only this channel (default: the person's channels)")
    test.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="config file (default: %(default)s)"
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `alerts` or `notify-test`; returns the exit code."""
    out = out or sys.stdout
    if args.command == "alerts":
        return _alerts(args, out)
    if args.command == "notify-test":
        return _notify_test(args, out)
    raise ValueError(f"not an alerts command: {args.command!r}")


def _alerts(args: argparse.Namespace, out: TextIO) -> int:
    try:
        window = parse_duration(args.since)
    except ValueError as exc:
        return fail(f"--since: {exc}", 2)
    if args.limit < 1:
        return fail("--limit: must be at least 1", 2)
    found = resolve_store(args)
    if isinstance(found, int):
        return found
    store, config = found
    zone = config.zone if config else ZoneInfo(_DEFAULT_ZONE)
    quiet = config.alerts.quiet_hours if config else _default_quiet_hours()
    since = datetime.now(UTC) - window
    return asyncio.run(list_alerts(store, since, args.status, args.limit, out, zone, quiet))


def _default_quiet_hours() -> Any:
    from alerts.config import AlertsConfig

    return AlertsConfig().quiet_hours


async def list_alerts(
    store_path: Path | StoreConfig,
    since: datetime,
    status: str | None,
    limit: int,
    out: TextIO,
    zone: ZoneInfo | None = None,
    quiet: Any = None,
    now: datetime | None = None,
) -> int:
    """Print the outbox rows created since `since` (newest first) from a read-only store.

    Nothing is cut: dossier codes and person ids are what people search for. A pending row says when it
    is due and what it waits for (`alerts.waiting`); a failed one its last error."""
    from alerts.outbox import Outbox
    from alerts.waiting import pending_wait
    from monitor.store import StoreError
    from monitor.store.open import open_readonly_store

    zone = zone or ZoneInfo(_DEFAULT_ZONE)
    now = now or datetime.now(UTC)
    try:
        store = await open_readonly_store(store_config_of(store_path))
    except StoreError as exc:
        return fail(str(exc))
    try:
        outbox = Outbox(store)
        rows = await outbox.list(since=since, status=status, limit=limit)
        counts = await outbox.counts()
    finally:
        await store.close()

    def local(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    summary = ", ".join(f"{key.value} {value}" for key, value in counts.items())
    print(f"outbox: {summary}", file=out)
    table = [("ID", "CREATED", "KIND", "PERSON", "SUBJECT", "STATUS", "CHANNEL", "TRIES", "SEND AT", "NOTE")]
    for row in rows:
        note, send_at = "", "-"
        if row.status.value == "pending":
            wait = pending_wait(row, now, quiet, zone)
            send_at, note = local(wait.due_at), wait.reason
        elif row.status.value == "sent" and row.sent_at is not None:
            send_at = local(row.sent_at)
        elif row.status.value != "sent":
            note = row.last_error or ""
        table.append(
            (
                str(row.id),
                local(row.created_at),
                row.kind,
                row.person_id,
                row.subject,
                row.status.value,
                row.channel_used or row.channel or "-",
                str(row.attempts),
                send_at,
                note,
            )
        )
    for line in _aligned(table):
        print(line, file=out)
    if not rows:
        print("(no alerts in that window)", file=out)
    return 0


def _aligned(table: Sequence[Sequence[str]]) -> list[str]:
    """Columns as wide as their widest cell (never cut), the last one left ragged."""
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in table
    ]


def _notify_test(args: argparse.Namespace, out: TextIO) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 1
    alerts = getattr(config, "alerts", None)
    if alerts is None:
        return fail(f"{args.config}: no alerts section (channels and directory) in this config")
    if config.store.engine == "sqlite":
        problem = store_path_problem(config.store.path, f"store.path in {args.config}", must_exist=False)
        if problem is not None:
            return fail(problem)
    from monitor.config_secrets import config_secrets
    from monitor.logging import register_secrets

    register_secrets(config_secrets(config))
    delivery = getattr(alerts, "delivery", None)
    return asyncio.run(notify_test(config.store, alerts, args.person, args.channel, out, delivery=delivery))


async def notify_test(
    store_path: Path | StoreConfig,
    alerts: Any,
    person_id: str,
    channel: str | None,
    out: TextIO,
    *,
    delivery: Any = None,
) -> int:
    """Send one test alert to `person_id` through `channel` (or the person's channels, else all).

    `alerts` is an `alerts.config.AlertsConfig` (channels, directory.people). Prints the outcome; returns
    0 when a gateway accepted it.
    """
    from alerts.channel_check import send_test_alert
    from alerts.channels import ChannelDeps, build_channels
    from alerts.delivery import DeliveryWorker
    from alerts.outbox import Outbox
    from monitor.store.open import store_from_config

    people = {person.id: person for person in alerts.directory.people}
    person: PersonLike | None = people.get(person_id)
    if person is None:
        return fail(f"unknown person {person_id!r} (not in alerts.directory.people)")
    configured = [config.name for config in alerts.channels]
    if channel is not None:
        if channel not in configured:
            return fail(f"unknown channel {channel!r} (configured: {', '.join(configured) or 'none'})")
        plan = [channel]
    else:
        plan = list(person.channels) or configured
    if not plan:
        return fail("no channel is configured")
    store = store_from_config(store_config_of(store_path))
    await store.open()
    deps = ChannelDeps(kv=store)
    channels: dict[str, Any] = {}
    try:
        channels = build_channels([config for config in alerts.channels if config.name in plan], deps)
        worker = DeliveryWorker(Outbox(store), channels, delivery)
        row = await send_test_alert(
            worker, person.id, phone=person.phone, zalo_user_id=person.zalo_user_id, channels=plan
        )
    finally:
        for item in channels.values():
            await item.close()
        await deps.aclose()
        await store.close()
    if row.status.value == "sent":
        duplicate = " (gateway saw this id before)" if row.duplicate_hint else ""
        message_id = row.provider_message_id or "-"
        print(
            f"sent test alert {row.id} to {person.id} via {row.channel_used}: message id {message_id}"
            f"{duplicate}",
            file=out,
        )
        return 0
    print(f"test alert {row.id} to {person.id} failed: {row.last_error}", file=out)
    return 1
