"""Working-time arithmetic for Vietnamese one-stop offices: shifting instants, spans, due dates.

Deadlines are counted the way OpenCPS counts them: one day is `hours_per_day` working hours (8 by
default) spread over the sessions of each working day, so "3 days" from Friday 10:00 before Tết ends
Wednesday 10:00 after it. Which days are worked comes from `monitor.calendar_days`, how a calendar is
configured from `monitor.calendar_config` (its names are re-exported here for existing importers).

Arithmetic is done on "working microseconds since 1 January" per year: every year gets a table of
cumulative working time at the start of each day, built once on demand, so comparing or shifting
instants is a bisect and a walk over at most a few sessions, whatever the span.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from monitor.calendar_config import (
    BUILTIN_CALENDARS,
    DEFAULT_TIMEZONE,
    WEEKDAYS,
    CalendarConfig,
    CalendarsConfig,
    ClockTime,
    DayEntry,
    OverrideFile,
    SessionConfig,
    builtin_override_path,
    clock_us,
    load_override_file,
)
from monitor.calendar_days import DayRules, DayStatus, Span

__all__ = [
    "BUILTIN_CALENDARS",
    "DEFAULT_TIMEZONE",
    "WEEKDAYS",
    "CalendarConfig",
    "Calendars",
    "CalendarsConfig",
    "ClockTime",
    "DayEntry",
    "DayStatus",
    "OverrideFile",
    "ReturnTiming",
    "SessionConfig",
    "WorkingCalendar",
    "builtin_override_path",
    "load_override_file",
]

_US_PER_MINUTE = 60_000_000
_US_PER_HOUR = 3_600_000_000
# Longest run of days without any working time that we accept before declaring a calendar broken
# (Tết plus weekends is about ten days).
_MAX_IDLE_DAYS = 800


class ReturnTiming(StrEnum):
    """How a returned dossier is classified against its due time (Circular 01/2018 Art. 13)."""

    EARLY = "early"
    ON_TIME = "on_time"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class _YearTable:
    first_ordinal: int
    # cumulative[i] = working microseconds from 1 January 00:00 to the start of day i; one extra entry
    # at the end holds the year's total.
    cumulative: list[int]
    sessions: list[tuple[Span, ...]]

    @property
    def total(self) -> int:
        return self.cumulative[-1]


def _clock(micros: int) -> str:
    minutes = micros // _US_PER_MINUTE
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class WorkingCalendar:
    """Working-time arithmetic for one calendar in one timezone. Immutable once built.

    Naive datetimes are read as wall-clock time in the calendar's zone; results are always aware.
    """

    __slots__ = ("_by_ordinal", "_config", "_cutoff_us", "_days", "_name", "_years", "_zone")

    def __init__(
        self,
        config: CalendarConfig | None = None,
        zone: ZoneInfo | str = DEFAULT_TIMEZONE,
        *,
        name: str = "default",
    ) -> None:
        config = config if config is not None else CalendarConfig()
        self._name = name
        self._config = config
        self._zone = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
        self._cutoff_us = None if config.cutoff is None else clock_us(config.cutoff)
        self._days = DayRules(config)
        self._years: dict[int, _YearTable] = {}
        # ordinal -> (year, working microseconds before that day in its year, sessions): one dict hit
        # per instant on the hot path of the deadline engine.
        self._by_ordinal: dict[int, tuple[int, int, tuple[Span, ...]]] = {}

    def __repr__(self) -> str:
        return f"WorkingCalendar(name={self.name!r}, kind={self.config.kind!r}, zone={self._zone.key!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def config(self) -> CalendarConfig:
        return self._config

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    @property
    def hours_per_day(self) -> float:
        return self.config.effective_hours_per_day

    @property
    def day_length(self) -> timedelta:
        """The working time of one counted day (8 h in a working calendar, 24 h in a continuous one)."""
        return timedelta(hours=self.hours_per_day)

    # --- days -------------------------------------------------------------------------------------

    def status(self, day: date) -> DayStatus:
        """Whether `day` is worked, why, and its sessions (cached per date)."""
        if isinstance(day, datetime):
            day = self._local(day).date()
        return self._days.status(day)

    def is_working_day(self, day: date) -> bool:
        return self.status(day).working

    def why(self, day: date) -> str:
        """A short human reason: "Lunar New Year (holidays package)", "weekend", "working day"..."""
        return self.status(day).reason

    def sessions_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working sessions of `day` as aware (start, end) pairs; empty on a day off."""
        day = self.status(day).day
        ordinal = day.toordinal()
        return [
            (self._at(ordinal, start), self._at(ordinal, end)) for start, end in self.status(day).sessions
        ]

    def exceptions(self, year: int) -> list[DayStatus]:
        """Days of `year` that differ from the weekly pattern: days off and make-up working days."""
        return self._days.exceptions(year)

    # --- instants ---------------------------------------------------------------------------------

    def _local(self, moment: datetime) -> datetime:
        zone = moment.tzinfo
        return moment if zone is None or zone is self._zone else moment.astimezone(self._zone)

    def _aware(self, moment: datetime) -> datetime:
        return moment.replace(tzinfo=self._zone) if moment.tzinfo is None else moment

    def _split(self, moment: datetime) -> tuple[int, int]:
        local = self._local(moment)
        micros = ((local.hour * 60 + local.minute) * 60 + local.second) * 1_000_000 + local.microsecond
        return local.toordinal(), micros

    def _at(self, ordinal: int, micros: int) -> datetime:
        midnight = datetime.combine(date.fromordinal(ordinal), time(), tzinfo=self._zone)
        # Aware + timedelta is wall-clock arithmetic, which is what sessions are written in.
        return midnight + timedelta(microseconds=micros)

    def _table(self, year: int) -> _YearTable:
        table = self._years.get(year)
        if table is None:
            first = date(year, 1, 1).toordinal()
            days = date(year + 1, 1, 1).toordinal() - first
            sessions = [self.status(date.fromordinal(first + index)).sessions for index in range(days)]
            cumulative = [0] * (days + 1)
            running = 0
            for index, spans in enumerate(sessions):
                running += sum(end - start for start, end in spans)
                cumulative[index + 1] = running
            table = self._years[year] = _YearTable(first, cumulative, sessions)
            for index, spans in enumerate(sessions):
                self._by_ordinal[first + index] = (year, cumulative[index], spans)
        return table

    def _day_entry(self, ordinal: int) -> tuple[int, int, tuple[Span, ...]]:
        entry = self._by_ordinal.get(ordinal)
        if entry is None:
            self._table(date.fromordinal(ordinal).year)
            entry = self._by_ordinal[ordinal]
        return entry

    def _sessions_of(self, ordinal: int) -> tuple[Span, ...]:
        return self._day_entry(ordinal)[2]

    def _position(self, moment: datetime) -> tuple[int, int]:
        """(year, working microseconds from that year's 1 January to `moment`)."""
        ordinal, micros = self._split(moment)
        year, before, sessions = self._day_entry(ordinal)
        for start, end in sessions:
            if micros <= start:
                break
            before += (micros if micros < end else end) - start
        return year, before

    def _locate(self, year: int, target: int) -> tuple[int, int]:
        """The earliest (ordinal, micros) whose working position in `year`'s terms is `target`."""
        for _ in range(_MAX_IDLE_DAYS):
            table = self._table(year)
            if target <= 0:
                year -= 1
                target += self._table(year).total
            elif target > table.total:
                target -= table.total
                year += 1
            else:
                index = bisect_left(table.cumulative, target) - 1
                remaining = target - table.cumulative[index]
                for start, end in table.sessions[index]:
                    if remaining <= end - start:
                        # Ending exactly at a session end stays there (17:00, not 07:00 next day).
                        return table.first_ordinal + index, start + remaining
                    remaining -= end - start
                raise AssertionError("cumulative table out of step with sessions")
        raise ValueError(f"calendar {self.name!r} has no working time around {year}")

    def _amount_us(self, days: float, hours: float) -> int:
        return round((days * self.hours_per_day + hours) * _US_PER_HOUR)

    def add_working_time(self, start: datetime, *, days: float = 0, hours: float = 0) -> datetime:
        """`start` plus working time (1 day = `hours_per_day` working hours); negative amounts go back.

        A start outside working time counts from the next opening; a result that falls exactly on a
        session end stays there.
        """
        amount = self._amount_us(days, hours)
        if amount == 0:
            return self.next_working_moment(start)
        year, position = self._position(start)
        return self._at(*self._locate(year, position + amount))

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time from `a` to `b`; negative when `b` is before `a` (overdue by)."""
        year_a, position_a = self._position(a)
        year_b, position_b = self._position(b)
        micros = position_b - position_a
        if year_a < year_b:
            micros += sum(self._table(year).total for year in range(year_a, year_b))
        elif year_a > year_b:
            micros -= sum(self._table(year).total for year in range(year_b, year_a))
        return timedelta(0, 0, micros)

    def next_working_moment(self, moment: datetime) -> datetime:
        """`moment` itself when inside a session, else the next session's opening."""
        ordinal, micros = self._split(moment)
        for _ in range(_MAX_IDLE_DAYS):
            for start, end in self._sessions_of(ordinal):
                if micros < end:
                    return self._at(ordinal, max(micros, start))
            ordinal, micros = ordinal + 1, 0
        raise ValueError(f"calendar {self.name!r} has no working time after {moment:%Y-%m-%d}")

    def start_of_half_day(self, moment: datetime) -> datetime:
        """The start of the session containing `moment` (a session's end belongs to it).

        Outside working time: the start of the latest session begun before `moment`.
        """
        ordinal, micros = self._split(moment)
        sessions = self._sessions_of(ordinal)
        for start, end in sessions:
            if start < micros <= end or micros == start:
                return self._at(ordinal, start)
        for start, _end in reversed(sessions):
            if start < micros:
                return self._at(ordinal, start)
        for _ in range(_MAX_IDLE_DAYS):
            ordinal -= 1
            if sessions := self._sessions_of(ordinal):
                return self._at(ordinal, sessions[-1][0])
        raise ValueError(f"calendar {self.name!r} has no working time before {moment:%Y-%m-%d}")

    def classify_return(self, due_at: datetime, returned_at: datetime) -> ReturnTiming:
        """Early before the half-day holding `due_at`, on time from then up to `due_at`, late after."""
        due_at, returned_at = self._aware(due_at), self._aware(returned_at)
        if returned_at > due_at:
            return ReturnTiming.LATE
        if returned_at < self.start_of_half_day(due_at):
            return ReturnTiming.EARLY
        return ReturnTiming.ON_TIME

    def due_date(
        self, received_at: datetime, *, days: float = 0, hours: float = 0, apply_cutoff: bool = True
    ) -> datetime:
        """The due time of a dossier received at `received_at` with a processing period of days or hours.

        After the afternoon cut-off of a working day, counting starts at the next working day's
        opening (Decree 61/2018 Art. 18, replaced by Decree 118/2025/NĐ-CP); hour-based periods ignore
        the cut-off unless `cutoff_for_hours` is set.
        """
        start = received_at
        day_based = days > 0
        cutoff_applies = day_based or (hours > 0 and self.config.cutoff_for_hours)
        if apply_cutoff and cutoff_applies and self._cutoff_us is not None:
            ordinal, micros = self._split(received_at)
            if self._sessions_of(ordinal) and micros > self._cutoff_us:
                start = self.next_working_moment(self._at(ordinal + 1, 0))
        return self.add_working_time(start, days=days, hours=hours)

    def describe_sessions(self, day: date) -> str:
        """`07:00-11:30, 13:30-17:00` for the sessions of `day`."""
        return ", ".join(f"{_clock(start)}-{_clock(end)}" for start, end in self.status(day).sessions)


class Calendars:
    """Every configured calendar, and which one applies to a dossier."""

    __slots__ = ("_by_name", "_config")

    def __init__(
        self, config: CalendarsConfig | None = None, zone: ZoneInfo | str = DEFAULT_TIMEZONE
    ) -> None:
        self._config = config if config is not None else CalendarsConfig()
        self._by_name = {
            name: WorkingCalendar(calendar, zone, name=name)
            for name, calendar in self._config.resolved().items()
        }

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    @property
    def default(self) -> WorkingCalendar:
        return self._by_name[self._config.default]

    def adopt(self, other: Calendars) -> None:
        """Take `other`'s calendars in place (a reload): every holder of this object sees them at once."""
        self._config = other._config
        self._by_name = other._by_name

    def get(self, name: str) -> WorkingCalendar:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown calendar {name!r}") from None

    def for_dossier(self, unit_code: str | None = None, procedure_code: str | None = None) -> WorkingCalendar:
        """The procedure's calendar if mapped, else the unit's, else the default."""
        if procedure_code is not None and procedure_code in self._config.procedures:
            return self._by_name[self._config.procedures[procedure_code]]
        if unit_code is not None and unit_code in self._config.units:
            return self._by_name[self._config.units[unit_code]]
        return self.default
