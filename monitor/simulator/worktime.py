"""The simulator's own, deliberately simple working-time arithmetic.

Mon-Fri, sessions 07:00-11:30 and 13:30-17:00 (8 working hours a day), no holidays. The monitor's real
calendar lives elsewhere; the simulator must not depend on it, so that a bug there cannot hide itself by
agreeing with the data it is checked against.

Working time is handled as a single integer line: `to_line(t)` is the number of working seconds from a
fixed origin up to `t`, so adding, subtracting and measuring working time are O(1).
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "DAY_SECONDS",
    "HOUR_SECONDS",
    "VN",
    "add_working",
    "from_line",
    "half_day_start",
    "round_up_quarter",
    "sub_working",
    "to_line",
    "working_between",
]

VN = ZoneInfo("Asia/Ho_Chi_Minh")
HOUR_SECONDS = 3600
_MORNING = (7 * 3600, 11 * 3600 + 1800)
_AFTERNOON = (13 * 3600 + 1800, 17 * 3600)
_MORNING_LEN = _MORNING[1] - _MORNING[0]
DAY_SECONDS = _MORNING_LEN + (_AFTERNOON[1] - _AFTERNOON[0])


def _worked_in_day(seconds: float) -> float:
    if seconds <= _MORNING[0]:
        return 0
    if seconds < _MORNING[1]:
        return seconds - _MORNING[0]
    if seconds <= _AFTERNOON[0]:
        return _MORNING_LEN
    if seconds < _AFTERNOON[1]:
        return _MORNING_LEN + seconds - _AFTERNOON[0]
    return DAY_SECONDS


def to_line(moment: datetime) -> int:
    """Working seconds from the origin to `moment` (weekends and off-hours collapse to a point)."""
    local = moment.astimezone(VN)
    ordinal = local.toordinal() - 1  # date(1, 1, 1) is a Monday
    week, weekday = divmod(ordinal, 7)
    if weekday >= 5:
        return (week * 5 + 5) * DAY_SECONDS
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    return int((week * 5 + weekday) * DAY_SECONDS + _worked_in_day(seconds))


def from_line(position: int) -> datetime:
    """The local moment at a working-time position; a day boundary maps to 17:00, not next 07:00."""
    day_index, worked = divmod(position - 1, DAY_SECONDS)
    worked += 1
    week, weekday = divmod(day_index, 5)
    day = date.fromordinal(week * 7 + weekday + 1)
    seconds = _MORNING[0] + worked if worked <= _MORNING_LEN else _AFTERNOON[0] + worked - _MORNING_LEN
    return datetime.combine(day, time(), tzinfo=VN) + timedelta(seconds=seconds)


def add_working(start: datetime, seconds: float) -> datetime:
    return from_line(to_line(start) + int(seconds))


def sub_working(end: datetime, seconds: float) -> datetime:
    return from_line(to_line(end) - int(seconds))


def working_between(start: datetime, end: datetime) -> int:
    """Working seconds from `start` to `end` (negative when `end` is earlier)."""
    return to_line(end) - to_line(start)


def round_up_quarter(position: int) -> int:
    # Sessions start on quarter hours, so a quarter hour on the line is one on the wall clock too.
    return math.ceil(position / 900) * 900


def half_day_start(moment: datetime) -> datetime:
    """07:00 or 13:30 of the session containing `moment`: the early / on-time boundary."""
    local = moment.astimezone(VN)
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    start = _MORNING[0] if seconds <= _MORNING[1] else _AFTERNOON[0]
    return datetime.combine(local.date(), time(), tzinfo=VN) + timedelta(seconds=start)
