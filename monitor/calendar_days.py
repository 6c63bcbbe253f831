"""Which dates an office works and why: weekly sessions, holidays, make-up days, overrides.

Days off come from the `holidays` package (country VN), the shipped `calendars/vn.yaml` decisions, the
unit's own override files and inline lists, later sources winning. `DayRules` answers for one date at
a time; `monitor.calendar` builds its working-time tables from those answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import holidays

from monitor.calendar_config import (
    WEEKDAYS,
    CalendarConfig,
    OverrideFile,
    builtin_override_path,
    load_override_file,
)

__all__ = ["DayRules", "DayStatus", "Span"]

_US_PER_DAY = 86_400_000_000

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class DayStatus:
    """What a calendar says about one date; `sessions` are microseconds after local midnight."""

    day: date
    working: bool
    reason: str
    sessions: tuple[Span, ...]


@lru_cache(maxsize=64)
def _package_year(year: int) -> tuple[dict[date, str], frozenset[date]]:
    """Days off and make-up working days the `holidays` package knows for one year."""
    # The package files a swap under the year of the day off, and a make-up day can fall in the year
    # before (2015's Tết was paid back on 2014-12-27), so read the neighbours too and keep this year.
    table = holidays.country_holidays(
        "VN", years=(year - 1, year, year + 1), categories=("public",), language="en_US"
    )
    days_off = {day: "; ".join(table.get_list(day)) for day in table if day.year == year}
    workdays = frozenset(day for day in getattr(table, "weekend_workdays", ()) if day.year == year)
    return days_off, workdays


class DayRules:
    """The day-by-day rules of one calendar config: whether a date is worked, why, and its sessions.

    Answers are cached per date; the object is otherwise immutable once built.
    """

    __slots__ = ("_config", "_days", "_default_sessions", "_overrides", "_use_package", "_weekday_sessions")

    def __init__(self, config: CalendarConfig) -> None:
        self._config = config
        self._default_sessions = tuple(session.span_us for session in config.sessions)
        self._weekday_sessions = tuple(
            tuple(session.span_us for session in config.weekday_sessions[day])
            if day in config.weekday_sessions
            else (self._default_sessions if index < 5 else ())
            for index, day in enumerate(WEEKDAYS)
        )
        self._use_package = config.kind == "working" and config.holidays
        self._overrides = self._load_overrides(config)
        self._days: dict[date, DayStatus] = {}

    @staticmethod
    def _load_overrides(config: CalendarConfig) -> dict[date, tuple[bool, str]]:
        if config.kind == "continuous":
            return {}
        sources: list[tuple[str, OverrideFile]] = []
        if config.builtin_overrides:
            path = builtin_override_path()
            sources.append((f"override {path.name}", load_override_file(path)))
        sources.extend((f"override {path.name}", load_override_file(path)) for path in config.override_files)
        sources.append(("config", OverrideFile(days_off=config.days_off, working_days=config.working_days)))
        overrides: dict[date, tuple[bool, str]] = {}
        # Later sources win: the unit's own files over the shipped decisions, inline lists over both.
        for label, content in sources:
            for entry in content.days_off:
                overrides[entry.date] = (False, f"day off: {entry.name or 'unnamed'} ({label})")
            for entry in content.working_days:
                overrides[entry.date] = (True, f"make-up working day: {entry.name or 'unnamed'} ({label})")
        return overrides

    def status(self, day: date) -> DayStatus:
        """Whether `day` is worked, why, and its sessions (cached per date)."""
        cached = self._days.get(day)
        if cached is None:
            cached = self._days[day] = self._compute_status(day)
        return cached

    def _compute_status(self, day: date) -> DayStatus:
        if self._config.kind == "continuous":
            return DayStatus(day, True, "continuous calendar: every day counts", ((0, _US_PER_DAY),))
        weekday = day.weekday()
        regular = self._weekday_sessions[weekday]
        # A make-up day or an overridden holiday is a full working day even on a weekday that is
        # normally off (make-up Saturdays follow the ordinary weekday sessions).
        full_day = regular or self._default_sessions
        override = self._overrides.get(day)
        if override is not None:
            working, reason = override
            return DayStatus(day, working, reason, full_day if working else ())
        if self._use_package:
            package_off, package_workdays = _package_year(day.year)
            if day in package_off:
                return DayStatus(day, False, f"{package_off[day]} (holidays package)", ())
            if day in package_workdays:
                return DayStatus(day, True, "make-up working day (holidays package)", full_day)
        if regular:
            return DayStatus(day, True, "working day", regular)
        return DayStatus(day, False, "weekend" if weekday >= 5 else f"no sessions on {WEEKDAYS[weekday]}", ())

    def exceptions(self, year: int) -> list[DayStatus]:
        """Days of `year` that differ from the weekly pattern: days off and make-up working days."""
        found = []
        day = date(year, 1, 1)
        while day.year == year:
            status = self.status(day)
            if status.sessions != self._weekday_sessions[day.weekday()]:
                found.append(status)
            day += timedelta(days=1)
        return found
