"""What the /status page shows, read from the daemon: a view, rendered by status_html.py.

Each configured target's state now, 90 daily uptime bars in the office's zone, open incidents and, per
unit, how many dossiers are due soon or overdue. Nothing personal or internal: no officer names, no
phone numbers, no probe details (they can name internal hosts), only target names, states, times and
cause categories.

Cheap whatever the number of targets: two store reads for every target and day (monitored spans and
incidents over the 90 days), one grouped query for the dossier counts; the bars are computed in Python.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from monitor.maintenance import in_maintenance, planned_maintenance
from monitor.store.availability import Span, availability, clip_spans, merge_spans
from monitor.store.base import Incident
from monitor.web.services import WebServices

__all__ = [
    "DAYS",
    "DayBar",
    "OpenIncident",
    "StatusView",
    "TargetStatus",
    "UnitDeadlines",
    "build_status",
    "daily_bars",
    "day_spans",
]

DAYS = 90


@dataclass(frozen=True, slots=True)
class DayBar:
    """One local day of one target: uptime over the monitored part, downtime, incidents overlapping it."""

    day: date
    uptime_ratio: float | None
    downtime_seconds: float
    incidents: tuple[Incident, ...]


@dataclass(frozen=True, slots=True)
class TargetStatus:
    name: str
    state: str  # a monitor.vi.HEALTH key
    since: datetime | None
    uptime_ratio: float | None  # over the days shown
    days: tuple[DayBar, ...]


@dataclass(frozen=True, slots=True)
class OpenIncident:
    target: str
    started_at: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class UnitDeadlines:
    """Tracked dossiers of one unit by deadline state: counts only, never a dossier or a person."""

    name: str
    due_soon: int
    due_today: int
    overdue: int


@dataclass(frozen=True, slots=True)
class StatusView:
    now: datetime
    zone: ZoneInfo
    targets: tuple[TargetStatus, ...]
    open_incidents: tuple[OpenIncident, ...]
    units: tuple[UnitDeadlines, ...] | None  # None: dossier tracking is not running


def day_spans(today: date, zone: ZoneInfo, count: int = DAYS) -> list[Span]:
    """The last `count` local days, oldest first, each from local midnight to the next."""
    days = [today - timedelta(days=count - 1 - offset) for offset in range(count + 1)]
    starts = [datetime.combine(day, time(), zone) for day in days]
    return [Span(a, b) for a, b in pairwise(starts)]


def daily_bars(
    days: Sequence[Span], monitored: Sequence[Span], incidents: Sequence[Incident], now: datetime
) -> tuple[DayBar, ...]:
    """Per day: `availability` over the monitored part of the day, and the incidents overlapping it.

    Each incident is placed on the days it overlaps by bisection, so the work grows with days plus
    incidents, not with their product (50 targets x 90 days must stay cheap).
    """
    starts = [day.start for day in days]
    on_day: list[list[Incident]] = [[] for _ in days]
    for incident in sorted(incidents, key=lambda i: i.started_at):
        end = incident.ended_at or now
        first = max(0, bisect_right(starts, incident.started_at) - 1)
        last = bisect_left(starts, end) if end > incident.started_at else first + 1
        for index in range(first, min(last, len(days))):
            if incident.started_at < days[index].end and end >= days[index].start:
                on_day[index].append(incident)
    monitored = merge_spans(monitored)
    bars = []
    for day, overlapping in zip(days, on_day, strict=True):
        figures = availability(
            clip_spans(monitored, [day]), [Span(i.started_at, i.ended_at or now) for i in overlapping]
        )
        ratio, down = figures.uptime_ratio, figures.downtime_seconds
        bars.append(DayBar(day.start.date(), ratio, down, tuple(overlapping)))
    return tuple(bars)


async def build_status(services: WebServices) -> StatusView:
    """Everything the page shows, read in a handful of queries."""
    now = services.now()
    zone = services.config.zone
    days = day_spans(now.astimezone(zone).date(), zone)
    start = days[0].start
    configured = services.config.targets
    planned = planned_maintenance(configured, start, now, zone)
    states = await services.target_states()
    spans = await services.store.monitored_spans(start, now, planned)
    by_target: dict[str, list[Incident]] = {}
    for incident in await services.store.incidents(start, now):
        by_target.setdefault(incident.target, []).append(incident)
    targets = []
    open_incidents = []
    for target in configured:
        name = target.name
        live = states.get(name)
        state = live.health if live is not None else "unknown"
        if in_maintenance(target.maintenance, now, zone):
            state = "maintenance"
        incidents = by_target.get(name, [])
        monitored = spans.get(name, [])
        figures = availability(monitored, [Span(i.started_at, i.ended_at or now) for i in incidents])
        targets.append(
            TargetStatus(
                name=name,
                state=state,
                since=live.since if live is not None else None,
                uptime_ratio=figures.uptime_ratio,
                days=daily_bars(days, monitored, incidents, now),
            )
        )
        open_incidents.extend(
            OpenIncident(name, i.started_at, i.reason) for i in incidents if i.ended_at is None
        )
    return StatusView(
        now=now,
        zone=zone,
        targets=tuple(targets),
        open_incidents=tuple(sorted(open_incidents, key=lambda i: i.started_at)),
        units=await _unit_deadlines(services, now),
    )


async def _unit_deadlines(services: WebServices, now: datetime) -> tuple[UnitDeadlines, ...] | None:
    dossiers = services.dossiers
    if dossiers is None:
        return None
    # `since=now`: only the counts per state are shown, not the returns over a window.
    summaries = await dossiers.dossier_store.unit_summaries(now, now)
    return tuple(
        UnitDeadlines(
            name=summary.unit_name or summary.unit_code,
            due_soon=summary.states.get("due_soon", 0),
            due_today=summary.states.get("due_today", 0),
            overdue=summary.states.get("overdue", 0),
        )
        for summary in summaries
        if summary.states
    )
