"""Working time for Vietnamese one-stop offices: sessions, holidays, make-up days, due dates.

Deadlines are counted the way OpenCPS counts them: one day is `hours_per_day` working hours (8 by
default) spread over the sessions of each working day, so "3 days" from Friday 10:00 before Tết ends
Wednesday 10:00 after it. Days off come from the `holidays` package (country VN), the shipped
`calendars/vn.yaml` decisions, the unit's own override files and inline lists, later sources winning.

Arithmetic is done on "working microseconds since 1 January" per year: every year gets a table of
cumulative working time at the start of each day, built once on demand, so comparing or shifting
instants is a bisect and a walk over at most a few sessions, whatever the span.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import holidays
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, ValidationInfo, model_validator

from monitor.configtypes import ConfigPath, StrictModel, format_validation_error, parse_yaml, reads_files

__all__ = [
    "BUILTIN_CALENDARS",
    "DEFAULT_TIMEZONE",
    "WEEKDAYS",
    "CalendarConfig",
    "Calendars",
    "CalendarsConfig",
    "DayEntry",
    "DayStatus",
    "OverrideFile",
    "ReturnTiming",
    "SessionConfig",
    "WorkingCalendar",
    "builtin_override_path",
    "load_override_file",
]

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

_US_PER_MINUTE = 60_000_000
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 86_400_000_000
# Longest run of days without any working time that we accept before declaring a calendar broken
# (Tết plus weekends is about ten days).
_MAX_IDLE_DAYS = 800

_Date = date  # field named `date` below would shadow the type inside the class body


# --- config ---------------------------------------------------------------------------------------

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def _parse_clock(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time of day like 07:30")
    if isinstance(value, int):
        # PyYAML reads an unquoted 07:30 as the base-60 integer 450: undo that.
        hours, minutes = divmod(value, 60)
    elif isinstance(value, time):
        hours, minutes = value.hour, value.minute
    elif isinstance(value, str) and (match := _CLOCK.match(value.strip())):
        hours, minutes = int(match[1]), int(match[2])
    else:
        raise ValueError(f"{value!r} is not a time of day like 07:30")
    if minutes >= 60 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{value!r} is not a time of day like 07:30")
    return f"{hours:02d}:{minutes:02d}"


ClockTime = Annotated[str, BeforeValidator(_parse_clock)]


def _minute_of_day(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class SessionConfig(StrictModel):
    """One working session of a day, `07:00-11:30` or `{start: "07:00", end: "11:30"}`; end may be 24:00."""

    start: ClockTime
    end: ClockTime

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            start, sep, end = data.partition("-")
            if not sep:
                raise ValueError(f"{data!r} is not a session like 07:00-11:30")
            return {"start": start.strip(), "end": end.strip()}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> SessionConfig:
        if _minute_of_day(self.end) <= _minute_of_day(self.start):
            raise ValueError(f"session {self.start}-{self.end} ends before it starts")
        return self

    @property
    def span_us(self) -> tuple[int, int]:
        """Start and end in microseconds after midnight."""
        return _minute_of_day(self.start) * _US_PER_MINUTE, _minute_of_day(self.end) * _US_PER_MINUTE

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def _ordered_sessions(sessions: list[SessionConfig]) -> list[SessionConfig]:
    ordered = sorted(sessions, key=lambda session: session.start)
    for previous, following in pairwise(ordered):
        if following.start < previous.end:
            raise ValueError(f"sessions overlap: {previous} and {following}")
    return ordered


Sessions = Annotated[list[SessionConfig], AfterValidator(_ordered_sessions)]


def _default_sessions() -> list[SessionConfig]:
    return [SessionConfig(start="07:00", end="11:30"), SessionConfig(start="13:30", end="17:00")]


class DayEntry(StrictModel):
    """A dated exception: a day off or a (make-up) working day, with the reason shown to users."""

    date: _Date
    name: str = ""


def _no_day_in_both(days_off: list[DayEntry], working_days: list[DayEntry]) -> None:
    clash = sorted({entry.date for entry in days_off} & {entry.date for entry in working_days})
    if clash:
        raise ValueError(f"{clash[0].isoformat()} is both a day off and a working day")


class OverrideFile(StrictModel):
    """An override file: `days_off: [{date, name}]` and `working_days: [{date, name}]`."""

    days_off: list[DayEntry] = Field(default_factory=list)
    working_days: list[DayEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> OverrideFile:
        _no_day_in_both(self.days_off, self.working_days)
        return self


def load_override_file(path: str | Path) -> OverrideFile:
    """Read and validate an override file; ValueError with a short message when it is unusable."""
    path = Path(path)
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{path.name}: invalid yaml: {exc}") from exc
    try:
        return OverrideFile.model_validate(raw or {})
    except ValidationError as exc:
        raise ValueError(f"{path.name}: " + "; ".join(format_validation_error(exc))) from None


def builtin_override_path() -> Path:
    """The shipped `vn.yaml` of government decisions (package data, so it works when installed)."""
    return Path(str(resources.files("monitor.calendars").joinpath("vn.yaml")))


def _readable_override(path: Path) -> Path:
    if reads_files():
        load_override_file(path)
    return path


_ReadableOverridePath = Annotated[ConfigPath, AfterValidator(_readable_override)]


class CalendarConfig(StrictModel):
    """How one office counts working time.

    `working`: sessions on working days, Vietnamese holidays and make-up days, 1 day = `hours_per_day`
    (8) working hours. `continuous`: every hour of every day counts (procedures in calendar days).
    """

    kind: Literal["working", "continuous"] = "working"
    sessions: Sessions = Field(default_factory=_default_sessions)
    # Per-weekday replacement of `sessions`, e.g. `sat: [07:00-11:30]`; `[]` makes that weekday off.
    weekday_sessions: dict[Weekday, Sessions] = Field(default_factory=dict)
    hours_per_day: float | None = Field(default=None, gt=0, le=24)
    holidays: bool = True
    builtin_overrides: bool = True
    override_files: list[Annotated[ConfigPath, AfterValidator(_readable_override)]] = Field(
        default_factory=list
    )
    days_off: list[DayEntry] = Field(default_factory=list)
    working_days: list[DayEntry] = Field(default_factory=list)
    # Decree 61/2018 Art. 18: dossiers received after 15:00 count from the next working day. Decree
    # 118/2025/NĐ-CP replaced it on 2025-07-01; its exact wording is unconfirmed here, hence a setting.
    cutoff: ClockTime | None = "15:00"
    cutoff_for_hours: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> CalendarConfig:
        if self.kind == "continuous":
            misplaced = sorted(
                {"sessions", "weekday_sessions", "override_files", "days_off", "working_days"}
                & self.model_fields_set
            )
            if misplaced:
                raise ValueError(f"{', '.join(misplaced)} not allowed in a continuous calendar")
            return self
        if not self.sessions:
            raise ValueError("sessions must list at least one session")
        weekly = [
            self.weekday_sessions.get(day, self.sessions if day not in ("sat", "sun") else [])
            for day in WEEKDAYS
        ]
        if not any(weekly):
            raise ValueError("no weekday has working sessions")
        _no_day_in_both(self.days_off, self.working_days)
        return self

    @property
    def effective_hours_per_day(self) -> float:
        if self.hours_per_day is not None:
            return self.hours_per_day
        return 24.0 if self.kind == "continuous" else 8.0


BUILTIN_CALENDARS: dict[str, CalendarConfig] = {
    "default": CalendarConfig(),
    "continuous": CalendarConfig(kind="continuous"),
}


def _known_calendar(name: str, info: ValidationInfo) -> str:
    # When `calendars` itself failed validation its own errors are reported; do not pile on.
    if "calendars" not in info.data:
        return name
    if name not in info.data["calendars"] and name not in BUILTIN_CALENDARS:
        raise ValueError(f"unknown calendar {name!r}")
    return name


CalendarName = Annotated[str, AfterValidator(_known_calendar)]


class CalendarsConfig(StrictModel):
    """Named calendars and which units and procedures use them (`default` and `continuous` always exist)."""

    calendars: dict[str, CalendarConfig] = Field(default_factory=dict)
    default: CalendarName = "default"
    units: dict[str, CalendarName] = Field(default_factory=dict)
    procedures: dict[str, CalendarName] = Field(default_factory=dict)

    def resolved(self) -> dict[str, CalendarConfig]:
        """Every calendar by name, the built-in ones included unless redefined."""
        return {**BUILTIN_CALENDARS, **self.calendars}


# --- the calendar ---------------------------------------------------------------------------------


class ReturnTiming(StrEnum):
    """How a returned dossier is classified against its due time (Circular 01/2018 Art. 13)."""

    EARLY = "early"
    ON_TIME = "on_time"
    LATE = "late"


Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class DayStatus:
    """What a calendar says about one date; `sessions` are microseconds after local midnight."""

    day: date
    working: bool
    reason: str
    sessions: tuple[Span, ...]


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


def _clock(micros: int) -> str:
    minutes = micros // _US_PER_MINUTE
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class WorkingCalendar:
    """Working-time arithmetic for one calendar in one timezone. Immutable once built.

    Naive datetimes are read as wall-clock time in the calendar's zone; results are always aware.
    """

    __slots__ = (
        "_by_ordinal",
        "_config",
        "_cutoff_us",
        "_days",
        "_default_sessions",
        "_name",
        "_overrides",
        "_use_package",
        "_weekday_sessions",
        "_years",
        "_zone",
    )

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
        self._default_sessions = tuple(session.span_us for session in config.sessions)
        self._weekday_sessions = tuple(
            tuple(session.span_us for session in config.weekday_sessions[day])
            if day in config.weekday_sessions
            else (self._default_sessions if index < 5 else ())
            for index, day in enumerate(WEEKDAYS)
        )
        self._cutoff_us = None if config.cutoff is None else _minute_of_day(config.cutoff) * _US_PER_MINUTE
        self._use_package = config.kind == "working" and config.holidays
        self._overrides = self._load_overrides(config)
        self._days: dict[date, DayStatus] = {}
        self._years: dict[int, _YearTable] = {}
        # ordinal -> (year, working microseconds before that day in its year, sessions): one dict hit
        # per instant on the hot path of the deadline engine.
        self._by_ordinal: dict[int, tuple[int, int, tuple[Span, ...]]] = {}

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
        cached = self._days.get(day)
        if cached is None:
            cached = self._days[day] = self._compute_status(day)
        return cached

    def _compute_status(self, day: date) -> DayStatus:
        if self.config.kind == "continuous":
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
        found = []
        day = date(year, 1, 1)
        while day.year == year:
            status = self.status(day)
            if status.sessions != self._weekday_sessions[day.weekday()]:
                found.append(status)
            day += timedelta(days=1)
        return found

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
