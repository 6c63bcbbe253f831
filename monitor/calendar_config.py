"""How an office's working-time calendars are configured: sessions, days off, override files, names.

The pydantic models behind the `calendars:` config section and the override files (`days_off` /
`working_days` lists, the shipped `calendars/vn.yaml` among them). They only describe a calendar;
`monitor.calendar_days` decides from them which dates are worked, and `monitor.calendar` counts working
time over those dates.
"""

from __future__ import annotations

import re
from datetime import date, time
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, ValidationInfo, model_validator

from monitor.configtypes import ConfigPath, StrictModel, format_validation_error, parse_yaml, reads_files

__all__ = [
    "BUILTIN_CALENDARS",
    "DEFAULT_TIMEZONE",
    "WEEKDAYS",
    "CalendarConfig",
    "CalendarsConfig",
    "ClockTime",
    "DayEntry",
    "OverrideFile",
    "SessionConfig",
    "Weekday",
    "builtin_override_path",
    "clock_us",
    "load_override_file",
]

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

_US_PER_MINUTE = 60_000_000

_Date = date  # field named `date` below would shadow the type inside the class body


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


def clock_us(clock: str) -> int:
    """Microseconds after midnight of a validated `HH:MM` clock time."""
    hours, minutes = clock.split(":")
    return (int(hours) * 60 + int(minutes)) * _US_PER_MINUTE


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
        if clock_us(self.end) <= clock_us(self.start):
            raise ValueError(f"session {self.start}-{self.end} ends before it starts")
        return self

    @property
    def span_us(self) -> tuple[int, int]:
        """Start and end in microseconds after midnight."""
        return clock_us(self.start), clock_us(self.end)

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
