"""Durations as written in config and on the command line: `90s`, `5m`, `2h`, `14d`, `1h30m`."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["SHORT_UNITS", "format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse `30s`, `5m`, `2h`, `14d`, `2w`, `1y`, `1h30m` or a bare number of seconds."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"invalid duration {text!r}: must not be negative")
        return _seconds(text, text)
    if not isinstance(text, str):  # e.g. a YAML key left empty (None): a ValueError pydantic can report
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, e.g. 30s, 5m, 2h, 14d")
    compact = text.strip().replace(" ", "")
    if not compact or _PART.sub("", compact):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, e.g. 30s, 5m, 2h, 14d")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(compact))
    return _seconds(seconds, text)


def _seconds(seconds: float, given: object) -> timedelta:
    # timedelta stops at 999,999,999 days and rejects NaN: a ValueError like any other bad duration,
    # not an OverflowError escaping to whoever parses config or a query parameter.
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise ValueError(f"invalid duration {given!r}: not a finite length of time") from None


# How each unit is written: the compact form by default; monitor/vi.py passes Vietnamese words.
SHORT_UNITS = ("{}d", "{}h", "{}m", "{}s")


def format_duration(value: timedelta | float, units: tuple[str, str, str, str] = SHORT_UNITS) -> str:
    """A short human form: `1d 2h`, `4h 30m`, `45s` (days, hours, minutes, seconds in `units`)."""
    day, hour, minute, second = units
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    if seconds < 60:
        return second.format(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [day.format(days)] if days else []
    if hours:
        parts.append(hour.format(hours))
    if minutes and not days:
        parts.append(minute.format(minutes))
    if secs and not days and not hours:
        parts.append(second.format(secs))
    return " ".join(parts)
