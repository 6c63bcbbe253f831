"""Fuzzing the boundaries that read text written by people or vendors: the config loader, durations,
working-time amounts, clock times, sessions and source dates. Whatever the input, the result is a value
or a precise error (ConfigError naming a YAML path, ValueError saying what is wrong), never another
exception."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from monitor.calendar import SessionConfig
from monitor.config import ConfigError, load_config_text
from monitor.dossiers.config import parse_working_amount
from monitor.durations import parse_duration
from probes.sources.mapping import DateParser

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_DURATION_TEXT = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\A\s*(\d{1,25}(\.\d{1,5})?(ms|s|m|h|d|w|y)){1,4}\s*\Z"),
)
_NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True))


@FUZZ
@given(st.one_of(_DURATION_TEXT, _NUMBERS, st.booleans()))
def test_durations_parse_or_say_why(value: object) -> None:
    """A duration is a non-negative timedelta or a ValueError that quotes the input."""
    try:
        parsed = parse_duration(value)  # type: ignore[arg-type]
    except ValueError as exc:
        assert "duration" in str(exc)
    else:
        assert isinstance(parsed, timedelta) and parsed >= timedelta(0)


@FUZZ
@given(st.one_of(_DURATION_TEXT, st.from_regex(r"\A(\d{1,30}(d|h|m|s)){1,3}\Z")))
def test_working_amounts_parse_or_say_why(text: str) -> None:
    """A working-time threshold is positive days and hours or a ValueError naming it."""
    try:
        amount = parse_working_amount(text)
    except ValueError as exc:
        assert "working time" in str(exc)
    else:
        assert amount.days >= 0 and amount.hours >= 0 and amount.days + amount.hours > 0
        assert amount.hours_in(8) < float("inf")


@FUZZ
@given(st.one_of(st.text(max_size=20), st.from_regex(r"\A\d{1,3}:\d{1,3}\s*-\s*\d{1,3}:\d{1,3}\Z"), _NUMBERS))
def test_sessions_parse_or_say_why(value: object) -> None:
    """A session is an ordered pair of clock times or a validation error with a short message."""
    try:
        session = SessionConfig.model_validate(value)
    except ValidationError as exc:
        assert all(error["msg"] for error in exc.errors())
    else:
        start, end = session.span_us
        assert 0 <= start < end <= 24 * 3600 * 1_000_000


@FUZZ
@given(
    st.one_of(
        st.text(max_size=30),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.from_regex(r"\A\d{1,2}/\d{1,2}/\d{1,6} \d{1,2}:\d{1,2}:\d{1,2}\Z"),
        st.from_regex(r"\A-?\d{1,25}\Z"),
    ),
    st.sampled_from([("%d/%m/%Y %H:%M:%S",), ("iso",), ("epoch_ms",), ("epoch_s",), ("%Y%m%d%H%M%S", "iso")]),
)
def test_source_dates_parse_or_say_why(value: object, formats: tuple[str, ...]) -> None:
    """A source date is an aware datetime, None when empty, or a ValueError naming the formats."""
    parser = DateParser(formats, ZoneInfo("Asia/Ho_Chi_Minh"))
    try:
        parsed = parser.parse(value)
    except ValueError as exc:
        assert str(exc)
    else:
        assert parsed is None or parsed.tzinfo is not None


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["5m", "1h30m", "-1s", "999999999999999d", "07:30", "0.0.0.0:1", "http://127.0.0.1:1/"]),
)
_KEYS = st.sampled_from(
    [
        "listen",
        "timezone",
        "api",
        "store",
        "scheduler",
        "logging",
        "targets",
        "dossiers",
        "alerts",
        "calendars",
        "name",
        "type",
        "url",
        "interval",
        "timeout",
        "path",
        "token",
        "sources",
        "channels",
        "max_concurrency",
        "flush_interval",
        "thresholds",
        "expect",
        "status",
        "host",
        "port",
        "sessions",
    ]
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=5)),
    max_leaves=25,
)


@FUZZ
@given(st.dictionaries(_KEYS, _TREES, max_size=6))
def test_config_loader_reports_every_problem_precisely(document: dict[str, object]) -> None:
    """Any YAML document loads or raises ConfigError whose every line starts with a YAML path."""
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        load_config_text(text, environ={})
    except ConfigError as exc:
        assert exc.errors
        for line in exc.errors:
            where, sep, message = line.partition(": ")
            assert sep and where and message, line


@FUZZ
@given(st.text(max_size=200))
def test_config_loader_survives_any_text(text: str) -> None:
    """Arbitrary text (broken YAML included) loads or raises ConfigError, never anything else."""
    try:
        load_config_text(text, environ={})
    except ConfigError as exc:
        assert exc.errors


@pytest.mark.parametrize("text", ["interval: 99999999999999999999d", "interval: 1e400"])
def test_huge_durations_are_config_errors(text: str) -> None:
    """A duration too long for any clock is a precise error at its path, not an OverflowError."""
    with pytest.raises(ConfigError, match=r"targets\[0\]\.interval: invalid duration"):
        load_config_text(
            f"targets:\n  - {{name: a, type: tcp, host: 127.0.0.1, port: 1, {text}}}\n", environ={}
        )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "0000-0-0T0:00:00",
            "<yaml>: a value cannot be read (year 0 is out of range); quote it if it is meant as text",
        ),
        (
            "timezone: 2026-02-30",
            "<yaml>: a value cannot be read (day is out of range for month); quote it if it is meant as text",
        ),
        ("listen: [1,", "<yaml>: line 1, column 12: expected the node content, but found '<stream end>'"),
    ],
)
def test_yaml_scalars_yaml_cannot_build_are_config_errors(text: str, error: str) -> None:
    """A date-looking scalar that is no real date (found by the fuzzer) is a precise error, no traceback."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, environ={})
    assert caught.value.errors == [error]
