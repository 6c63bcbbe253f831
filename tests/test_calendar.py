"""The working-time calendar: holidays, make-up days, sessions, cut-off, arithmetic and its CLI."""

from __future__ import annotations

import argparse
import io
import time as stopwatch
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from monitor.calendar import (
    CalendarConfig,
    Calendars,
    CalendarsConfig,
    ReturnTiming,
    SessionConfig,
    WorkingCalendar,
    load_override_file,
)
from monitor.cli.calendar import add_parser, run
from monitor.config import format_validation_error

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# Built once: hypothesis reuses it across examples, and its caches are part of what is exercised.
DEFAULT = WorkingCalendar(CalendarConfig(), ZONE)
PACKAGE_ONLY = WorkingCalendar(CalendarConfig(builtin_overrides=False), ZONE)


def at(text: str) -> datetime:
    """A wall-clock time in Vietnam."""
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def slow_between(calendar: WorkingCalendar, a: datetime, b: datetime) -> timedelta:
    """Reference implementation: walk every day and clip its sessions (a < b only)."""
    total = timedelta(0)
    day = a.astimezone(ZONE).date()
    while day <= b.astimezone(ZONE).date():
        for start, end in calendar.sessions_on(day):
            overlap = min(end, b) - max(start, a)
            if overlap > timedelta(0):
                total += overlap
        day += timedelta(days=1)
    return total


# --- holidays and make-up days ----------------------------------------------------------------------


def test_tet_2026_from_package() -> None:
    """Tết 2026: Monday 16 to Friday 20 February are off; Friday 13 and Monday 23 are worked."""
    for offset in range(5):
        day = date(2026, 2, 16) + timedelta(days=offset)
        assert not PACKAGE_ONLY.is_working_day(day)
        assert PACKAGE_ONLY.why(day).endswith("(holidays package)")
    assert PACKAGE_ONLY.why(date(2026, 2, 17)) == "Lunar New Year (holidays package)"
    assert PACKAGE_ONLY.is_working_day(date(2026, 2, 13))
    assert PACKAGE_ONLY.why(date(2026, 2, 13)) == "working day"
    assert PACKAGE_ONLY.is_working_day(date(2026, 2, 23))
    assert PACKAGE_ONLY.why(date(2026, 2, 21)) == "weekend"


def test_tet_2025_from_package() -> None:
    """Tết 2025: Monday 27 to Friday 31 January are off, Monday 3 February is worked."""
    off = [date(2025, 1, 27) + timedelta(days=offset) for offset in range(5)]
    assert [PACKAGE_ONLY.is_working_day(day) for day in off] == [False] * 5
    assert "Lunar New Year" in PACKAGE_ONLY.why(date(2025, 1, 29))
    assert PACKAGE_ONLY.is_working_day(date(2025, 2, 3))


def test_makeup_saturday_2025_04_26() -> None:
    """The package's make-up Saturday is worked with full weekday sessions; its swapped Friday is off."""
    saturday = date(2025, 4, 26)
    assert PACKAGE_ONLY.is_working_day(saturday)
    assert PACKAGE_ONLY.why(saturday) == "make-up working day (holidays package)"
    assert [(s.time(), e.time()) for s, e in PACKAGE_ONLY.sessions_on(saturday)] == [
        (at("2025-04-26 07:00").time(), at("2025-04-26 11:30").time()),
        (at("2025-04-26 13:30").time(), at("2025-04-26 17:00").time()),
    ]
    assert not PACKAGE_ONLY.is_working_day(date(2025, 5, 2))
    # The shipped vn.yaml repeats the decision, so it holds even with an older holidays package.
    assert DEFAULT.is_working_day(saturday)
    assert DEFAULT.why(saturday).startswith("make-up working day: ")
    assert DEFAULT.why(saturday).endswith("(override vn.yaml)")
    assert not DEFAULT.is_working_day(date(2025, 5, 2))


def test_makeup_saturday_2026_08_22() -> None:
    """National Day 2026: Saturday 22 August is worked to pay back Monday 31 August."""
    assert PACKAGE_ONLY.is_working_day(date(2026, 8, 22))
    assert not PACKAGE_ONLY.is_working_day(date(2026, 8, 31))
    assert not DEFAULT.is_working_day(date(2026, 9, 1))
    assert not DEFAULT.is_working_day(date(2026, 9, 2))


def test_vietnam_cultural_day_follows_public_category() -> None:
    """24/11/2026 is in the package's `public` category (the only one VN has), so it is a day off."""
    public = holidays.country_holidays("VN", years=2026, categories=("public",), language="en_US")
    assert holidays.country_holidays("VN").supported_categories == ("public",)
    assert date(2026, 11, 24) in public
    assert not DEFAULT.is_working_day(date(2026, 11, 24))
    assert DEFAULT.why(date(2026, 11, 24)) == "Vietnam Cultural Day (holidays package)"
    # 2025 had no such day.
    assert DEFAULT.is_working_day(date(2025, 11, 24))


def test_holidays_can_be_turned_off() -> None:
    """With `holidays: false` and no overrides Tết days are ordinary working days."""
    plain = WorkingCalendar(CalendarConfig(holidays=False, builtin_overrides=False), ZONE)
    assert plain.is_working_day(date(2026, 2, 17))
    assert not plain.is_working_day(date(2025, 4, 26))


def test_override_file_adds_day_off_and_working_day(tmp_path: Path) -> None:
    """A unit override file adds a local day off and a working Sunday, and beats the package."""
    overrides = write_yaml(
        tmp_path / "province.yaml",
        {
            "days_off": [{"date": "2026-03-10", "name": "provincial liberation day"}],
            "working_days": [
                {"date": "2026-03-15", "name": "local make-up day"},
                {"date": "2026-11-24", "name": "province keeps the office open"},
            ],
        },
    )
    calendar = WorkingCalendar(CalendarConfig(override_files=[overrides]), ZONE)
    assert not calendar.is_working_day(date(2026, 3, 10))
    assert calendar.why(date(2026, 3, 10)) == "day off: provincial liberation day (override province.yaml)"
    assert calendar.is_working_day(date(2026, 3, 15))
    assert (
        calendar.why(date(2026, 3, 15)) == "make-up working day: local make-up day (override province.yaml)"
    )
    assert len(calendar.sessions_on(date(2026, 3, 15))) == 2
    assert calendar.is_working_day(date(2026, 11, 24))
    # Tuesday 2026-03-10 09:00 + 1 day skips the local day off.
    assert calendar.add_working_time(at("2026-03-09 09:00"), days=1) == at("2026-03-11 09:00")


def test_inline_days_win_over_files(tmp_path: Path) -> None:
    """Inline `working_days` / `days_off` beat override files and the shipped decisions."""
    overrides = write_yaml(tmp_path / "o.yaml", {"days_off": [{"date": "2026-03-10", "name": "x"}]})
    config = CalendarConfig(
        override_files=[overrides],
        working_days=[{"date": "2026-03-10", "name": "cancelled"}],
        days_off=[{"date": "2025-04-26", "name": "unit closed"}],
    )
    calendar = WorkingCalendar(config, ZONE)
    assert calendar.is_working_day(date(2026, 3, 10))
    assert calendar.why(date(2026, 3, 10)) == "make-up working day: cancelled (config)"
    assert not calendar.is_working_day(date(2025, 4, 26))


def test_override_file_errors(tmp_path: Path) -> None:
    """A missing or contradictory override file fails config validation with its path in the location."""
    clash = write_yaml(
        tmp_path / "clash.yaml",
        {"days_off": [{"date": "2026-03-10"}], "working_days": [{"date": "2026-03-10"}]},
    )
    with pytest.raises(ValueError, match="2026-03-10 is both a day off and a working day"):
        load_override_file(clash)
    with pytest.raises(ValidationError) as caught:
        CalendarConfig(override_files=[tmp_path / "missing.yaml"])
    assert format_validation_error(caught.value)[0].startswith("override_files[0]: cannot read")
    bad = write_yaml(tmp_path / "bad.yaml", {"days_off": [{"date": "not a date"}], "extra": 1})
    with pytest.raises(ValueError, match=r"bad\.yaml: .*days_off\[0\]\.date"):
        load_override_file(bad)


def test_shipped_vn_yaml_is_valid() -> None:
    """The shipped decisions file parses and its swaps come in day-off / working-day pairs."""
    from monitor.calendar import builtin_override_path

    content = load_override_file(builtin_override_path())
    assert len(content.days_off) == len(content.working_days) >= 2
    assert all(entry.date.weekday() == 5 for entry in content.working_days)
    assert all(entry.date.weekday() < 5 for entry in content.days_off)


# --- sessions and per-unit calendars ----------------------------------------------------------------


def saturday_config() -> CalendarsConfig:
    return CalendarsConfig.model_validate(
        {
            "calendars": {
                "saturday": {"weekday_sessions": {"sat": ["07:00-11:30"]}},
                "opencps": {"sessions": ["07:30-11:30", "13:00-17:00"]},
            },
            "units": {"UBND-Q1": "saturday", "UBND-Q3": "opencps"},
            "procedures": {"1.001": "continuous"},
        }
    )


def test_unit_with_saturday_mornings() -> None:
    """A unit receiving on Saturday mornings works 07:00-11:30 on Saturdays, not on Sundays."""
    calendars = Calendars(saturday_config(), ZONE)
    unit = calendars.for_dossier("UBND-Q1", "2.002")
    assert unit.name == "saturday"
    saturday = date(2026, 3, 7)
    assert [(s.hour, s.minute, e.hour, e.minute) for s, e in unit.sessions_on(saturday)] == [(7, 0, 11, 30)]
    assert not unit.is_working_day(date(2026, 3, 8))
    # Friday 16:00 + 2 h: one hour on Friday, one on Saturday morning.
    assert unit.add_working_time(at("2026-03-06 16:00"), hours=2) == at("2026-03-07 08:00")
    assert unit.working_time_between(at("2026-03-06 17:00"), at("2026-03-09 07:00")) == timedelta(hours=4.5)
    # A holiday on a Saturday beats the unit's weekly pattern (Labor Day 2027 is a Saturday).
    assert not unit.is_working_day(date(2027, 5, 1))
    assert unit.why(date(2027, 5, 1)) == "International Labor Day (holidays package)"
    # Other units keep Monday-Friday.
    assert not calendars.for_dossier("UBND-Q2").is_working_day(saturday)


def test_for_dossier_precedence() -> None:
    """Procedure mapping wins over unit mapping, which wins over the default."""
    calendars = Calendars(saturday_config(), ZONE)
    assert calendars.for_dossier("UBND-Q1", "1.001").name == "continuous"
    assert calendars.for_dossier("UBND-Q3", None).name == "opencps"
    assert calendars.for_dossier(None, None).name == "default"
    assert calendars.for_dossier("unknown", "unknown") is calendars.default
    assert calendars.get("opencps").add_working_time(at("2026-03-09 07:00"), hours=4) == at(
        "2026-03-09 11:30"
    )
    with pytest.raises(KeyError, match="unknown calendar 'nope'"):
        calendars.get("nope")
    assert set(calendars.names) == {"default", "continuous", "saturday", "opencps"}


def test_config_validation_messages() -> None:
    """Bad sessions and unknown calendar names give short messages at the right location."""
    with pytest.raises(ValidationError) as caught:
        CalendarConfig.model_validate({"sessions": ["13:30-11:30"]})
    assert format_validation_error(caught.value) == ["sessions[0]: session 13:30-11:30 ends before it starts"]
    with pytest.raises(ValidationError) as caught:
        CalendarConfig.model_validate({"sessions": ["07:00-12:00", "11:00-17:00"]})
    assert format_validation_error(caught.value) == [
        "sessions: sessions overlap: 07:00-12:00 and 11:00-17:00"
    ]
    with pytest.raises(ValidationError) as caught:
        CalendarsConfig.model_validate({"units": {"U1": "x"}, "default": "y"})
    assert sorted(format_validation_error(caught.value)) == [
        "default: unknown calendar 'y'",
        "units.U1: unknown calendar 'x'",
    ]
    with pytest.raises(ValidationError) as caught:
        CalendarConfig.model_validate({"kind": "continuous", "sessions": ["07:00-11:00"]})
    assert format_validation_error(caught.value) == ["<root>: sessions not allowed in a continuous calendar"]
    with pytest.raises(ValidationError) as caught:
        CalendarConfig.model_validate({"cutoff": "25:00"})
    assert "is not a time of day" in format_validation_error(caught.value)[0]
    with pytest.raises(ValidationError) as caught:
        CalendarConfig.model_validate(
            {"weekday_sessions": {dow: [] for dow in ("mon", "tue", "wed", "thu", "fri")}}
        )
    assert "no weekday has working sessions" in format_validation_error(caught.value)[0]


def test_unquoted_yaml_times() -> None:
    """`cutoff: 15:30` and `start: 07:00` unquoted (YAML base-60 integers) still mean clock times."""
    raw = yaml.safe_load("cutoff: 15:30\nsessions:\n  - {start: 07:00, end: 11:30}\n  - 13:30-17:00\n")
    assert raw["cutoff"] == 930
    config = CalendarConfig.model_validate(raw)
    assert config.cutoff == "15:30"
    assert config.sessions == [
        SessionConfig(start="07:00", end="11:30"),
        SessionConfig(start="13:30", end="17:00"),
    ]


# --- arithmetic -------------------------------------------------------------------------------------


def test_three_days_across_tet_2026() -> None:
    """Friday 13/2 10:00 + 3 days: 5 h Friday, 8 h on 23/2, 8 h on 24/2, 3 h on 25/2 → 25/2 10:00."""
    due = DEFAULT.add_working_time(at("2026-02-13 10:00"), days=3)
    assert due == at("2026-02-25 10:00")
    assert DEFAULT.working_time_between(at("2026-02-13 10:00"), due) == timedelta(hours=24)
    assert DEFAULT.due_date(at("2026-02-13 10:00"), days=3) == at("2026-02-25 10:00")


def test_starts_outside_working_time() -> None:
    """Starts before opening, during lunch or after closing count from the next session's opening."""
    assert DEFAULT.add_working_time(at("2026-03-10 06:00"), hours=1) == at("2026-03-10 08:00")
    assert DEFAULT.add_working_time(at("2026-03-10 12:00"), hours=1) == at("2026-03-10 14:30")
    assert DEFAULT.add_working_time(at("2026-03-10 18:00"), hours=1) == at("2026-03-11 08:00")
    assert DEFAULT.add_working_time(at("2026-03-13 18:00"), hours=1) == at("2026-03-16 08:00")
    assert DEFAULT.add_working_time(at("2026-03-10 12:00"), hours=0) == at("2026-03-10 13:30")
    assert DEFAULT.next_working_moment(at("2026-03-10 11:30")) == at("2026-03-10 13:30")
    assert DEFAULT.next_working_moment(at("2026-03-10 09:15")) == at("2026-03-10 09:15")
    assert DEFAULT.next_working_moment(at("2026-02-13 17:00")) == at("2026-02-23 07:00")


def test_ends_at_session_end_stay_there() -> None:
    """A remainder ending exactly at a session end stays at that end, not the next opening."""
    assert DEFAULT.add_working_time(at("2026-03-10 10:00"), hours=1.5) == at("2026-03-10 11:30")
    assert DEFAULT.add_working_time(at("2026-03-10 07:00"), days=1) == at("2026-03-10 17:00")
    assert DEFAULT.add_working_time(at("2026-03-13 07:00"), days=1) == at("2026-03-13 17:00")
    assert DEFAULT.add_working_time(at("2026-03-10 09:00"), days=0.5) == at("2026-03-10 15:00")


def test_negative_amounts_go_back() -> None:
    """Negative amounts count back, e.g. the apology deadline two working days before the due time."""
    assert DEFAULT.add_working_time(at("2026-02-24 09:00"), days=-2) == at("2026-02-13 09:00")
    assert DEFAULT.working_time_between(at("2026-02-24 09:00"), at("2026-02-13 09:00")) == timedelta(
        hours=-16
    )


def test_working_time_between_is_signed_and_spans_years() -> None:
    """Between is negative backwards and adds whole-year totals across New Year."""
    a, b = at("2025-12-31 16:00"), at("2026-01-02 08:00")
    assert DEFAULT.working_time_between(a, b) == timedelta(hours=2)
    assert DEFAULT.working_time_between(b, a) == timedelta(hours=-2)
    long_a, long_b = at("2024-06-03 07:00"), at("2027-06-03 07:00")
    span = DEFAULT.working_time_between(long_a, long_b)
    assert span == slow_between(DEFAULT, long_a, long_b)
    # 2026-06-03 07:00 is an opening, so the inverse lands on the previous closing: 2027-06-02 17:00.
    assert DEFAULT.add_working_time(long_a, hours=span / timedelta(hours=1)) == at("2027-06-02 17:00")


def test_naive_and_foreign_timezones() -> None:
    """Naive datetimes are Vietnam wall time; other zones are converted first."""
    utc = at("2026-03-10 10:00").astimezone(ZoneInfo("UTC"))
    assert DEFAULT.add_working_time(utc, hours=1) == at("2026-03-10 11:00")
    assert DEFAULT.add_working_time(datetime(2026, 3, 10, 10, 0), hours=1) == at("2026-03-10 11:00")


def test_afternoon_cutoff() -> None:
    """Received at 15:30 on a working day, a day-based period counts from the next morning."""
    monday = "2026-03-09"
    assert DEFAULT.due_date(at(f"{monday} 15:30"), days=1) == at("2026-03-10 17:00")
    assert DEFAULT.due_date(at(f"{monday} 15:30"), days=1, apply_cutoff=False) == at("2026-03-10 15:30")
    # At exactly 15:00 the dossier still counts from the same day.
    assert DEFAULT.due_date(at(f"{monday} 15:00"), days=1) == at("2026-03-10 15:00")
    # Friday after the cut-off: counting starts Monday.
    assert DEFAULT.due_date(at("2026-03-13 16:00"), days=2) == at("2026-03-17 17:00")
    # Hour-based procedures ignore the cut-off by default...
    assert DEFAULT.due_date(at(f"{monday} 15:30"), hours=4) == at("2026-03-10 09:30")
    # ...unless the calendar says otherwise.
    strict = WorkingCalendar(CalendarConfig(cutoff_for_hours=True), ZONE)
    assert strict.due_date(at(f"{monday} 15:30"), hours=4) == at("2026-03-10 11:00")
    late = WorkingCalendar(CalendarConfig(cutoff="16:00"), ZONE)
    assert late.due_date(at(f"{monday} 15:30"), days=1) == at("2026-03-10 15:30")
    off = WorkingCalendar(CalendarConfig(cutoff=None), ZONE)
    assert off.due_date(at(f"{monday} 15:30"), days=1) == at("2026-03-10 15:30")


def test_continuous_calendar() -> None:
    """A continuous calendar counts every hour of every day, Tết included: 1 day = 24 h."""
    calendar = WorkingCalendar(CalendarConfig(kind="continuous", cutoff=None), ZONE)
    assert calendar.is_working_day(date(2026, 2, 17))
    assert calendar.add_working_time(at("2026-02-13 10:00"), days=3) == at("2026-02-16 10:00")
    assert calendar.add_working_time(at("2026-02-13 10:00"), days=1, hours=14) == at("2026-02-15 00:00")
    assert calendar.working_time_between(at("2026-02-13 10:00"), at("2026-02-20 10:00")) == timedelta(days=7)
    assert calendar.day_length == timedelta(hours=24)
    # The default cut-off still applies: a 15:30 receipt counts from midnight.
    builtin = Calendars(None, ZONE).get("continuous")
    assert builtin.due_date(at("2026-02-13 15:30"), days=1) == at("2026-02-15 00:00")


def test_hours_per_day_configurable() -> None:
    """With hours_per_day 7.5 a day is 7.5 working hours."""
    calendar = WorkingCalendar(CalendarConfig(hours_per_day=7.5), ZONE)
    assert calendar.add_working_time(at("2026-03-10 07:00"), days=1) == at("2026-03-10 16:30")


def test_classify_return() -> None:
    """Early before the half-day holding the due time, on time within it up to due, late after."""
    due = at("2026-03-10 17:00")
    assert DEFAULT.start_of_half_day(due) == at("2026-03-10 13:30")
    assert DEFAULT.classify_return(due, at("2026-03-10 11:00")) is ReturnTiming.EARLY
    assert DEFAULT.classify_return(due, at("2026-03-10 13:29")) == "early"
    assert DEFAULT.classify_return(due, at("2026-03-10 13:30")) == "on_time"
    assert DEFAULT.classify_return(due, due) == "on_time"
    assert DEFAULT.classify_return(due, at("2026-03-10 17:01")) == "late"
    morning_due = at("2026-03-10 11:30")
    assert DEFAULT.start_of_half_day(morning_due) == at("2026-03-10 07:00")
    assert DEFAULT.classify_return(morning_due, at("2026-03-09 16:00")) == "early"
    assert DEFAULT.classify_return(morning_due, at("2026-03-10 07:05")) == "on_time"
    # Outside working time: the latest session begun before it.
    assert DEFAULT.start_of_half_day(at("2026-03-10 12:15")) == at("2026-03-10 07:00")
    assert DEFAULT.start_of_half_day(at("2026-02-23 06:00")) == at("2026-02-13 13:30")


def test_status_is_cached_and_calendar_is_slotted() -> None:
    """Per-day status is computed once; the calendar cannot be changed after it is built."""
    calendar = WorkingCalendar(CalendarConfig(), ZONE)
    assert calendar.status(date(2026, 2, 17)) is calendar.status(date(2026, 2, 17))
    with pytest.raises(AttributeError):
        calendar.something = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        calendar.name = "other"  # type: ignore[misc]
    assert "default" in repr(calendar)


def test_bulk_speed() -> None:
    """100,000 comparisons against due dates take well under a second of CPU."""
    now = at("2026-05-05 09:00")
    dues = [at("2025-01-02 07:00") + timedelta(minutes=97 * index) for index in range(100_000)]
    DEFAULT.working_time_between(dues[0], dues[-1])  # build the year tables outside the timing
    started = stopwatch.process_time()
    left = [DEFAULT.working_time_between(now, due) for due in dues]
    elapsed = stopwatch.process_time() - started
    assert elapsed < 1.0
    assert left[0] < timedelta(0) < left[-1]


# --- properties -------------------------------------------------------------------------------------

SATURDAY = Calendars(saturday_config(), ZONE).get("saturday")
moments = st.datetimes(min_value=datetime(2024, 6, 1), max_value=datetime(2027, 6, 1)).map(
    lambda moment: moment.replace(tzinfo=ZONE)
)
minutes = st.integers(min_value=0, max_value=60 * 8 * 40)


@settings(max_examples=300, deadline=None, database=None)
@given(moments, minutes)
def test_between_inverts_add(start: datetime, amount: int) -> None:
    """working_time_between(a, add_working_time(a, h)) == h, for any start."""
    end = DEFAULT.add_working_time(start, hours=amount / 60)
    assert DEFAULT.working_time_between(start, end) == timedelta(minutes=amount)
    back = DEFAULT.add_working_time(end, hours=-amount / 60)
    assert DEFAULT.working_time_between(end, back) == -timedelta(minutes=amount)


@settings(max_examples=300, deadline=None, database=None)
@given(moments, minutes, minutes)
def test_add_is_monotonic(start: datetime, first: int, second: int) -> None:
    """More working time never gives an earlier result."""
    low, high = sorted((first, second))
    assert DEFAULT.add_working_time(start, hours=low / 60) <= DEFAULT.add_working_time(start, hours=high / 60)


@settings(max_examples=300, deadline=None, database=None)
@given(moments, moments)
def test_between_is_antisymmetric(a: datetime, b: datetime) -> None:
    """working_time_between(a, b) == -working_time_between(b, a)."""
    assert DEFAULT.working_time_between(a, b) == -DEFAULT.working_time_between(b, a)


@settings(max_examples=100, deadline=None, database=None)
@given(moments, st.integers(min_value=0, max_value=60 * 24 * 20))
def test_between_matches_day_walk(a: datetime, span: int) -> None:
    """The table-based between agrees with a plain walk over every day's sessions."""
    b = a + timedelta(minutes=span)
    unit = SATURDAY if span % 2 else DEFAULT
    assert unit.working_time_between(a, b) == slow_between(unit, a, b)


# --- CLI --------------------------------------------------------------------------------------------


def cli(*argv: str) -> tuple[int, str, str]:
    """Parse argv with a parser built by add_parser and run it, capturing output."""
    parser = argparse.ArgumentParser(prog="tthc-monitor")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["calendar", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = args.handler(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_due() -> None:
    """`calendar due` prints the due time; the afternoon cut-off applies unless --no-cutoff."""
    assert cli("due", "--from", "2026-02-13 10:00", "--days", "3") == (0, "2026-02-25 10:00\n", "")
    assert cli("due", "--from", "2026-03-09 15:30", "--days", "1")[1] == "2026-03-10 17:00\n"
    assert cli("due", "--from", "2026-03-09 15:30", "--days", "1", "--no-cutoff")[1] == "2026-03-10 15:30\n"
    assert cli("due", "--from", "2026-03-09T12:00", "--hours", "4")[1] == "2026-03-10 07:30\n"
    assert cli("due", "--from", "2026-03-09 12:00", "--hours", "1", "--calendar", "continuous")[1] == (
        "2026-03-09 13:00\n"
    )


def test_cli_due_default_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Without explicit streams `run` prints to stdout."""
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    assert run(parser.parse_args(["calendar", "due", "--from", "2026-02-13 10:00", "--hours", "5"])) == 0
    assert capsys.readouterr().out == "2026-02-13 17:00\n"


def test_cli_bad_input_exits_2() -> None:
    """A bad date, a negative period or an unknown calendar exits 2 with a clear message."""
    code, out, err = cli("due", "--from", "2026-02-30 10:00", "--days", "1")
    assert (code, out) == (2, "")
    assert "invalid date and time '2026-02-30 10:00'" in err
    code, _, err = cli("check", "16/02/2026")
    assert code == 2
    assert "invalid date '16/02/2026': use YYYY-MM-DD" in err
    assert cli("due", "--from", "2026-02-13 10:00", "--days", "-1")[0] == 2
    code, _, err = cli("check", "2026-02-16", "--calendar", "nope")
    assert code == 2
    assert "unknown calendar 'nope'" in err


def test_cli_check() -> None:
    """`calendar check` says whether a date is worked and why, exiting 0 either way."""
    assert cli("check", "2026-02-16") == (
        0,
        "2026-02-16 mon: not a working day: Lunar New Year's Eve (holidays package)\n",
        "",
    )
    assert cli("check", "2026-02-13")[1] == "2026-02-13 fri: working day (07:00-11:30, 13:30-17:00)\n"
    assert cli("check", "2026-02-21")[1] == "2026-02-21 sat: not a working day: weekend\n"
    assert "make-up working day" in cli("check", "2025-04-26")[1]


def test_cli_list() -> None:
    """`calendar list` shows the year's days off and make-up working days with reasons."""
    code, out, _ = cli("list", "--year", "2026")
    lines = out.splitlines()
    assert code == 0
    assert "2026-02-17 tue  day off  Lunar New Year (holidays package)" in lines
    assert any(line.startswith("2026-08-22 sat  working") for line in lines)
    assert any(line.startswith("2026-11-24 tue  day off") for line in lines)
    assert not any(line.startswith("2026-02-21") for line in lines)
    assert [line[:10] for line in lines] == sorted(line[:10] for line in lines)
    assert cli("list", "--year", "3000")[0] == 2


def test_cli_reads_calendars_from_daemon_config(tmp_path: Path) -> None:
    """--config reads the `calendars:` section (relative override files next to the config)."""
    (tmp_path / "cal").mkdir()
    write_yaml(tmp_path / "cal" / "local.yaml", {"days_off": [{"date": "2026-03-09", "name": "flood"}]})
    config = write_yaml(
        tmp_path / "tthc.yaml",
        {
            "timezone": "Asia/Ho_Chi_Minh",
            "calendars": {
                "calendars": {
                    "saturday": {
                        "weekday_sessions": {"sat": ["07:00-11:30"]},
                        "override_files": ["cal/local.yaml"],
                    }
                },
                "units": {"UBND-Q1": "saturday"},
            },
        },
    )
    assert cli(
        "due", "--config", str(config), "--unit", "UBND-Q1", "--from", "2026-03-06 16:00", "--hours", "2"
    ) == (
        0,
        "2026-03-07 08:00\n",
        "",
    )
    assert cli("check", "--config", str(config), "--unit", "UBND-Q1", "2026-03-09")[1] == (
        "2026-03-09 mon: not a working day: day off: flood (override local.yaml)\n"
    )
    assert cli("check", "--config", str(config), "2026-03-09")[1].startswith("2026-03-09 mon: working day")


def test_cli_config_errors(tmp_path: Path) -> None:
    """Invalid calendars or other config errors exit 2 and name the YAML path."""
    bad = write_yaml(tmp_path / "bad.yaml", {"calendars": {"units": {"U1": "missing"}}})
    code, _, err = cli("check", "--config", str(bad), "2026-03-09")
    assert code == 2
    assert "calendars.units.U1: unknown calendar 'missing'" in err
    other = write_yaml(tmp_path / "other.yaml", {"timezone": "Mars/Base"})
    code, _, err = cli("check", "--config", str(other), "2026-03-09")
    assert code == 2
    assert "timezone: unknown timezone 'Mars/Base'" in err


def test_cli_calendars_only_file(tmp_path: Path) -> None:
    """--calendars FILE takes a file holding just the calendars section."""
    section = write_yaml(tmp_path / "calendars.yaml", {"default": "continuous"})
    assert cli("due", "--calendars", str(section), "--from", "2026-02-13 10:00", "--days", "3")[1] == (
        "2026-02-16 10:00\n"
    )
