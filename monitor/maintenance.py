"""Maintenance windows: planned outages that open no incident and do not count against uptime."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.targets import MaintenanceWindow

__all__ = ["active_window", "in_maintenance"]


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
