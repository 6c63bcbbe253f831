"""Fuzzing of the boundaries tests/test_fuzz.py leaves out: working-time thresholds (`2d`, `4h`), working
sessions (`07:00-11:30`), the config loader on arbitrary text, and the scalars PyYAML recognises but
cannot build. Whatever the input, a value or a precise error, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from monitor.calendar import SessionConfig
from monitor.config import ConfigError, load_config_text
from monitor.dossiers.config import parse_working_amount

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True))


@FUZZ
@given(
    st.one_of(
        st.text(max_size=30),
        st.from_regex(r"\A\s*(\d{1,25}(\.\d{1,5})?(ms|s|m|h|d|w|y)){1,4}\s*\Z"),
        st.from_regex(r"\A(\d{1,30}(d|h|m|s)){1,3}\Z"),
    )
)
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
@given(
    st.one_of(
        st.text(max_size=20),
        st.from_regex(r"\A\d{1,3}:\d{1,3}\s*-\s*\d{1,3}:\d{1,3}\Z"),
        _NUMBERS,
    )
)
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
@given(st.text(max_size=200))
def test_config_loader_survives_any_text(text: str) -> None:
    """Arbitrary text (broken YAML included) loads or raises ConfigError, never anything else."""
    try:
        load_config_text(text, environ={})
    except ConfigError as exc:
        assert exc.errors


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("0000-0-0T0:00:00", "<yaml>: a value cannot be read: year 0 is out of range"),
        ("timezone: 2026-02-30", "<yaml>: a value cannot be read: day is out of range for month"),
        ("listen: [1,", "<yaml>: line 1, column 12: expected the node content, but found '<stream end>'"),
    ],
)
def test_yaml_scalars_yaml_cannot_build_are_config_errors(text: str, error: str) -> None:
    """A date-looking scalar that is no real date (found by the fuzzer) is a precise error, no traceback."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, environ={})
    assert caught.value.errors == [error]


@pytest.mark.parametrize("text", ["interval: 99999999999999999999d", "interval: 1000000000d"])
def test_huge_durations_are_config_errors(text: str) -> None:
    """A duration too long for any clock is a precise error at its path, not an OverflowError."""
    with pytest.raises(ConfigError, match=r"targets\[0\]\.interval: invalid duration"):
        load_config_text(
            f"targets:\n  - {{name: a, type: tcp, host: 127.0.0.1, port: 1, {text}}}\n", environ={}
        )
