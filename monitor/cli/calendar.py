"""`tthc-monitor calendar ...`: compute a due date, check a day, list a year's days off and make-up days."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from monitor.calendar import DEFAULT_TIMEZONE, WEEKDAYS, Calendars, CalendarsConfig, WorkingCalendar
from monitor.config import ConfigError, format_validation_error, load_config, load_config_text
from monitor.configtypes import CONFIG_DIR, parse_yaml

__all__ = ["add_parser", "load_calendars", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `calendar` and its subcommands on the main parser's subparsers; `run` handles them."""
    parser = subparsers.add_parser(
        "calendar",
        help="working-time calendar: due dates, working days, days off",
        description="Working-time calendar: due dates, working days, days off and make-up days.",
    )
    commands = parser.add_subparsers(dest="calendar_command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    source = common.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, metavar="FILE", help="daemon config (calendars: and timezone)")
    source.add_argument(
        "--calendars", type=Path, metavar="FILE", help="a file holding only a calendars section"
    )
    common.add_argument("--unit", metavar="CODE", help="use the calendar of this unit")
    common.add_argument("--procedure", metavar="CODE", help="use the calendar of this procedure")
    common.add_argument("--calendar", metavar="NAME", help="use this calendar by name")

    due = commands.add_parser("due", parents=[common], help="due time of a dossier received at --from")
    due.add_argument("--from", dest="start", required=True, metavar="'YYYY-MM-DD HH:MM'")
    amount = due.add_mutually_exclusive_group(required=True)
    amount.add_argument("--days", type=float, help="processing period in working days")
    amount.add_argument("--hours", type=float, help="processing period in working hours")
    due.add_argument("--no-cutoff", action="store_true", help="ignore the afternoon cut-off")

    check = commands.add_parser("check", parents=[common], help="is a date a working day, and why")
    check.add_argument("date", metavar="YYYY-MM-DD")

    listing = commands.add_parser(
        "list", parents=[common], help="days off and make-up working days of a year"
    )
    listing.add_argument("--year", type=int, default=None, help="default: this year")

    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run a `calendar` subcommand: 0 on success, 2 on bad input or configuration."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        calendar = _select(args)
        if args.calendar_command == "due":
            return _due(args, calendar, out)
        if args.calendar_command == "check":
            return _check(args, calendar, out)
        return _list(args, calendar, out)
    except _UsageError as exc:
        print(f"tthc-monitor: {exc}", file=err)
        return 2
    except ConfigError as exc:
        if exc.unreadable:
            print(f"tthc-monitor: {'; '.join(exc.errors)}", file=err)
            return 2
        print(f"{exc.source}: invalid configuration:", file=err)
        for line in exc.errors:
            print(f"  {line}", file=err)
        return 2


class _UsageError(Exception):
    pass


def _select(args: argparse.Namespace) -> WorkingCalendar:
    config, timezone = load_calendars(config_file=args.config, calendars_file=args.calendars)
    try:
        calendars = Calendars(config, timezone)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if args.calendar:
        try:
            return calendars.get(args.calendar)
        except KeyError:
            raise _UsageError(
                f"unknown calendar {args.calendar!r}; known: {', '.join(calendars.names)}"
            ) from None
    return calendars.for_dossier(args.unit, args.procedure)


def load_calendars(
    *, config_file: Path | None = None, calendars_file: Path | None = None
) -> tuple[CalendarsConfig, str]:
    """The calendars section and timezone from a daemon config, a calendars-only file, or the defaults."""
    if calendars_file is not None:
        raw = _read_yaml(calendars_file)
        return _validate_section(raw, calendars_file, prefix=""), DEFAULT_TIMEZONE
    if config_file is None:
        return CalendarsConfig(), DEFAULT_TIMEZONE
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        # Until `Config` grows a `calendars` field the section is an unknown key there: read it here.
        if not all(line.startswith("calendars") for line in exc.errors):
            raise
    else:
        section = getattr(config, "calendars", None)
        if isinstance(section, CalendarsConfig):
            return section, config.timezone
    raw = _read_yaml(config_file)
    if not isinstance(raw, dict):
        raise ConfigError(["<root>: the file must be a mapping of settings"], str(config_file))
    section = raw.pop("calendars", None) or {}
    rest = load_config_text(
        yaml.safe_dump(raw), source=str(config_file), base_dir=config_file.resolve().parent
    )
    return _validate_section(section, config_file, prefix="calendars"), rest.timezone


def _read_yaml(path: Path) -> Any:
    try:
        return parse_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}"], str(path)) from exc
    except ValueError as exc:
        raise ConfigError([f"<yaml>: {exc}"], str(path)) from exc


def _validate_section(raw: Any, path: Path, *, prefix: str) -> CalendarsConfig:
    if raw is None:
        raw = {}
    try:
        # Override files named in the file are read relative to it, like every config path.
        return CalendarsConfig.model_validate(raw, context={CONFIG_DIR: path.resolve().parent})
    except ValidationError as exc:
        lines = format_validation_error(exc)
        if prefix:
            lines = [
                f"{prefix}.{line}" if not line.startswith("<root>") else f"{prefix}: {line}" for line in lines
            ]
        raise ConfigError(lines, str(path)) from None


def _parse_moment(text: str, calendar: WorkingCalendar) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _UsageError(f"invalid date and time {text!r}: use 'YYYY-MM-DD HH:MM'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=calendar.zone)
    return moment


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise _UsageError(f"invalid date {text!r}: use YYYY-MM-DD") from None


def _due(args: argparse.Namespace, calendar: WorkingCalendar, out: TextIO) -> int:
    received = _parse_moment(args.start, calendar)
    days, hours = args.days or 0.0, args.hours or 0.0
    if days < 0 or hours < 0:
        raise _UsageError("the processing period must not be negative")
    due = calendar.due_date(received, days=days, hours=hours, apply_cutoff=not args.no_cutoff)
    print(due.astimezone(calendar.zone).strftime("%Y-%m-%d %H:%M"), file=out)
    return 0


def _check(args: argparse.Namespace, calendar: WorkingCalendar, out: TextIO) -> int:
    day = _parse_day(args.date)
    status = calendar.status(day)
    label = f"{day.isoformat()} {WEEKDAYS[day.weekday()]}"
    if status.working:
        detail = "" if status.reason == "working day" else f": {status.reason}"
        print(f"{label}: working day ({calendar.describe_sessions(day)}){detail}", file=out)
    else:
        print(f"{label}: not a working day: {status.reason}", file=out)
    return 0


def _list(args: argparse.Namespace, calendar: WorkingCalendar, out: TextIO) -> int:
    year = args.year if args.year is not None else datetime.now(calendar.zone).year
    if not 1901 <= year <= 2100:
        raise _UsageError(f"year {year} is outside 1901-2100")
    for status in calendar.exceptions(year):
        kind = "working" if status.working else "day off"
        print(
            f"{status.day.isoformat()} {WEEKDAYS[status.day.weekday()]}  {kind:<8} {status.reason}", file=out
        )
    return 0
