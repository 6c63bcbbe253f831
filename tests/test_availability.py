"""Uptime arithmetic over monitored spans (monitor/store/availability.py) and the status page's days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.config import load_config_text
from monitor.maintenance import planned_maintenance
from monitor.store.availability import (
    Span,
    availability,
    clip_spans,
    merge_spans,
    spans_seconds,
    subtract_spans,
)
from monitor.store.base import Incident
from monitor.web.status_html import bar_class
from monitor.web.status_view import daily_bars, day_spans

T0 = datetime(2026, 10, 1, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_downtime_outside_monitored_time_counts_on_neither_side() -> None:
    """A gap in monitoring (the monitor was off) is neither up nor down; overlapping incidents count once."""
    monitored = [Span(at(0), at(10)), Span(at(12), at(20))]
    down = [Span(at(9), at(13)), Span(at(9.5), at(10)), Span(at(19), at(21))]
    figures = availability(monitored, down)
    assert figures.monitored_seconds == 18 * 3600
    assert figures.downtime_seconds == (1 + 1 + 1) * 3600
    assert figures.uptime_ratio == pytest.approx(1 - 3 / 18)
    assert availability([], down).uptime_ratio is None


@given(
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), max_size=12),
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), max_size=12),
)
def test_clipping_matches_a_minute_by_minute_count(raw_spans, raw_limits) -> None:
    """clip_spans and spans_seconds agree with counting each minute covered by both."""
    spans = [Span(at(a / 60), at(b / 60)) for a, b in raw_spans]
    limits = [Span(at(a / 60), at(b / 60)) for a, b in raw_limits]
    inside = clip_spans(spans, limits)
    minutes = sum(
        1
        for m in range(500)
        if any(a <= m < b for a, b in raw_spans) and any(a <= m < b for a, b in raw_limits)
    )
    assert spans_seconds(inside) == pytest.approx(minutes * 60)
    assert inside == merge_spans(inside)


def test_daily_bars_split_incidents_across_local_days() -> None:
    """An incident over local midnight lands on both days; days before monitoring have no ratio."""
    now = datetime(2026, 10, 10, 12, 0, tzinfo=ZONE)
    days = day_spans(now.date(), ZONE, count=5)
    assert [d.start.day for d in days] == [6, 7, 8, 9, 10]
    monitored = [Span(datetime(2026, 10, 7, 6, tzinfo=ZONE), now)]
    night = Incident(
        1, "portal", datetime(2026, 10, 8, 23, tzinfo=ZONE), datetime(2026, 10, 9, 1, tzinfo=ZONE), "dns"
    )
    still_open = Incident(2, "portal", datetime(2026, 10, 10, 11, tzinfo=ZONE), None, "timeout")
    bars = daily_bars(days, monitored, [still_open, night], now)
    assert [bar.uptime_ratio is None for bar in bars] == [True, False, False, False, False]
    assert [len(bar.incidents) for bar in bars] == [0, 0, 1, 1, 1]
    assert [bar.downtime_seconds for bar in bars] == [0, 0, 3600, 3600, 3600]
    assert bars[1].uptime_ratio == 1.0 and bars[4].uptime_ratio == pytest.approx(1 - 1 / 12)
    assert [bar_class(bar.uptime_ratio) for bar in bars] == ["none", "ok", "major", "major", "bad"]


def test_planned_maintenance_is_left_out_of_monitored_time() -> None:
    """Weekly and one-off windows expand over the range (one running at its start included) and are cut
    out of monitored time, so an outage inside them is neither up nor down."""
    config = load_config_text(
        "targets:\n"
        "  - {name: portal, type: tcp, host: 127.0.0.1, port: 9, maintenance: ["
        "{days: [sun], start: '22:00', duration: 6h}, {start: '2026-10-07 12:00', duration: 30m}]}\n"
        "  - {name: db, type: tcp, host: 127.0.0.1, port: 9}\n",
        environ={},
    )
    start = datetime(2026, 10, 5, 1, 0, tzinfo=ZONE)  # Monday 01:00, inside Sunday's window
    end = datetime(2026, 10, 12, 12, 0, tzinfo=ZONE)
    planned = planned_maintenance(config.targets, start, end, ZONE)
    assert set(planned) == {"portal"}
    assert planned["portal"] == [
        Span(start, datetime(2026, 10, 5, 4, tzinfo=ZONE)),
        Span(datetime(2026, 10, 7, 12, tzinfo=ZONE), datetime(2026, 10, 7, 12, 30, tzinfo=ZONE)),
        Span(datetime(2026, 10, 11, 22, tzinfo=ZONE), datetime(2026, 10, 12, 4, tzinfo=ZONE)),
    ]
    monitored = subtract_spans([Span(start, end)], planned["portal"])
    assert spans_seconds(monitored) == (end - start).total_seconds() - (3 + 0.5 + 6) * 3600
    outage = Span(datetime(2026, 10, 11, 21, tzinfo=ZONE), datetime(2026, 10, 11, 23, tzinfo=ZONE))
    assert availability(monitored, [outage]).downtime_seconds == 3600
