"""Maintenance windows: planned outages that open no incident and do not count against uptime."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.store.availability import Span, merge_spans
from monitor.targets import MaintenanceWindow, Target

__all__ = ["active_window", "in_maintenance", "maintenance_spans", "planned_maintenance"]


def _window_contains(window: MaintenanceWindow, now: datetime, default_zone: ZoneInfo) -> bool:
    zone = ZoneInfo(window.timezone) if window.timezone else default_zone
    local_now = now.astimezone(zone)
    if window.days is None:
        start = datetime.fromisoformat(window.start)
        start = start.replace(tzinfo=zone) if start.tzinfo is None else start
        return start <= now < start + window.duration
    start_time = time.fromisoformat(window.start)
    weekdays = window.weekday_numbers
    # A weekly window may have started on an earlier day and still be running (e.g. Sunday 22:00 for 6h).
    days_back = int(window.duration / timedelta(days=1)) + 1
    for back in range(days_back + 1):
        day = local_now.date() - timedelta(days=back)
        if day.weekday() not in weekdays:
            continue
        start = datetime.combine(day, start_time, tzinfo=zone)
        if start <= local_now < start + window.duration:
            return True
    return False


def active_window(
    windows: Sequence[MaintenanceWindow], now: datetime, default_zone: ZoneInfo
) -> MaintenanceWindow | None:
    """The first window that covers `now` (aware), or None."""
    for window in windows:
        if _window_contains(window, now, default_zone):
            return window
    return None


def in_maintenance(windows: Sequence[MaintenanceWindow], now: datetime, default_zone: ZoneInfo) -> bool:
    return active_window(windows, now, default_zone) is not None


def maintenance_spans(
    windows: Sequence[MaintenanceWindow], start: datetime, end: datetime, default_zone: ZoneInfo
) -> list[Span]:
    """Every occurrence of `windows` overlapping [start, end), merged (weekly ones expanded day by day)."""
    spans = []
    for window in windows:
        zone = ZoneInfo(window.timezone) if window.timezone else default_zone
        if window.days is None:
            opens = datetime.fromisoformat(window.start)
            opens = opens.replace(tzinfo=zone) if opens.tzinfo is None else opens
            spans.append(Span(opens, opens + window.duration))
            continue
        start_time = time.fromisoformat(window.start)
        weekdays = window.weekday_numbers
        # A window that opened before `start` may still be running at `start`.
        day = (start - window.duration).astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date()
        while day <= last:
            if day.weekday() in weekdays:
                opens = datetime.combine(day, start_time, tzinfo=zone)
                spans.append(Span(opens, opens + window.duration))
            day += timedelta(days=1)
    return [
        Span(max(span.start, start), min(span.end, end))
        for span in merge_spans(spans)
        if span.start < end and span.end > start
    ]


def planned_maintenance(
    targets: Iterable[Target], start: datetime, end: datetime, zone: ZoneInfo
) -> dict[str, list[Span]]:
    """Per target with maintenance windows, their occurrences in [start, end): time that is planned out of
    service, so neither up nor down (`SqlStore.monitored_spans` leaves it out of monitored time)."""
    planned = {}
    for target in targets:
        if target.maintenance:
            planned[target.name] = maintenance_spans(target.maintenance, start, end, zone)
    return planned
