"""The monthly SLA report: per target uptime, incidents, MTTR and downtime in and out of working hours;
per unit dossier returns by timeliness, overdue ones (and those during outages), postal share; the
previous month beside it. Rendered by render.py (Markdown, CSV, HTML for A4).

Figures come from the same store reads as `tthc-monitor uptime` and /api/v1/targets/{name}/uptime:
monitored spans (the time the daemon was running and watching) and unmonitored seconds from
`SqlStore.coverage`, downtime from incidents, both through
`monitor.store.availability.availability`, so the three agree on the same data. Months are calendar
months in the office's zone. Only the part of an incident inside the month and outside planned maintenance
counts as its downtime; MTTR is the mean full length of the incidents that ended within the month.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from monitor.calendar import WorkingCalendar
from monitor.dossiers.store import DossierStore
from monitor.maintenance import planned_maintenance
from monitor.store.availability import Span, availability, clip_spans, spans_seconds
from monitor.store.base import Incident
from monitor.store.monitored import Coverage
from monitor.store.sql import SqlStore
from monitor.targets import Target

__all__ = [
    "IncidentLine",
    "Month",
    "SlaReport",
    "TargetSla",
    "UnitSla",
    "build_report",
    "parse_month",
    "unit_figures",
]

_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    @property
    def following(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def span(self, zone: ZoneInfo) -> Span:
        """From local midnight of the 1st to local midnight of the next month's 1st."""
        after = self.following
        return Span(
            datetime(self.year, self.month, 1, tzinfo=zone), datetime(after.year, after.month, 1, tzinfo=zone)
        )


def parse_month(text: str) -> Month:
    """`2026-10` -> Month(2026, 10); ValueError naming the value otherwise."""
    match = _MONTH.fullmatch(text.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
        raise ValueError(f"{text!r} is not a month like 2026-10")
    return Month(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True, slots=True)
class IncidentLine:
    """One incident overlapping the month; times inside the month are what counts as downtime."""

    id: int
    started_at: datetime
    ended_at: datetime | None  # None: still open when the report was made
    cause: str | None  # the reason the incident opened with
    counted_seconds: float  # inside the month and monitored time: what it adds to the downtime
    working_seconds: float  # of counted_seconds, inside the working calendar's sessions


@dataclass(frozen=True, slots=True)
class TargetSla:
    name: str
    monitored_seconds: float
    downtime_seconds: float
    uptime_ratio: float | None
    incidents: tuple[IncidentLine, ...]
    mttr_seconds: float | None  # mean full length of incidents that ended in the month
    downtime_working_seconds: float
    downtime_off_hours_seconds: float
    # Inside the month, before now, the monitor was not running: neither up nor down.
    unmonitored_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class UnitSla:
    code: str
    name: str
    early: int
    on_time: int
    late: int
    other: int  # returned without a timeliness (cancelled, undated)
    overdue: int  # turned overdue in the month
    overdue_during_outage: int
    postal: int

    @property
    def returned(self) -> int:
        return self.early + self.on_time + self.late + self.other

    @property
    def on_time_ratio(self) -> float | None:
        judged = self.early + self.on_time + self.late
        return None if not judged else (self.early + self.on_time) / judged

    @property
    def postal_ratio(self) -> float | None:
        return None if not self.returned else self.postal / self.returned


@dataclass(frozen=True, slots=True)
class SlaReport:
    month: Month
    zone: ZoneInfo
    start: datetime
    end: datetime
    generated_at: datetime
    calendar: str
    targets: tuple[TargetSla, ...]
    units: tuple[UnitSla, ...]
    previous: SlaReport | None = None

    def previous_target(self, name: str) -> TargetSla | None:
        if self.previous is None:
            return None
        return next((target for target in self.previous.targets if target.name == name), None)

    def previous_unit(self, code: str) -> UnitSla | None:
        if self.previous is None:
            return None
        return next((unit for unit in self.previous.units if unit.code == code), None)


async def build_report(
    store: SqlStore,
    month: Month,
    *,
    zone: ZoneInfo,
    calendar: WorkingCalendar,
    now: datetime,
    targets: list[str] | None = None,
    configured: Sequence[Target] = (),
    with_previous: bool = True,
) -> SlaReport:
    """The report for `month`, read from `store`; `targets` limits and orders the targets (default: every
    target the store knows with monitored time in the month). `configured` targets bring their
    maintenance windows, which are left out of monitored time (without a config none are known)."""
    window = month.span(zone)
    end = min(window.end, now)
    planned = planned_maintenance(configured, window.start, window.end, zone)
    coverage = await store.coverage(window.start, window.end, planned)
    by_target: dict[str, list[Incident]] = {}
    for incident in await store.incidents(window.start, window.end):
        by_target.setdefault(incident.target, []).append(incident)
    names = targets if targets is not None else [name for name, found in coverage.items() if found.monitored]
    target_lines = tuple(
        _target_sla(name, coverage.get(name), by_target.get(name, []), window, end, calendar)
        for name in names
    )
    previous = None
    if with_previous:
        previous = await build_report(
            store,
            month.previous,
            zone=zone,
            calendar=calendar,
            now=now,
            targets=targets,
            configured=configured,
            with_previous=False,
        )
    return SlaReport(
        month=month,
        zone=zone,
        start=window.start,
        end=window.end,
        generated_at=now,
        calendar=calendar.name,
        targets=target_lines,
        units=await unit_figures(DossierStore(store), window),
        previous=previous,
    )


def _target_sla(
    name: str,
    coverage: Coverage | None,
    incidents: list[Incident],
    window: Span,
    end: datetime,
    calendar: WorkingCalendar,
) -> TargetSla:
    monitored = coverage.monitored if coverage else []
    lines = []
    down = []
    for incident in sorted(incidents, key=lambda i: (i.started_at, i.id)):
        span = Span(incident.started_at, incident.ended_at if incident.ended_at is not None else end)
        down.append(span)
        # What of it counts: inside the month and inside monitored time (not in planned maintenance).
        counted = clip_spans([span], [*monitored])
        lines.append(
            IncidentLine(
                id=incident.id,
                started_at=incident.started_at,
                ended_at=incident.ended_at,
                cause=incident.reason,
                counted_seconds=spans_seconds(counted),
                working_seconds=_working_seconds(calendar, counted),
            )
        )
    figures = availability(monitored, down)
    ended = [
        (i.ended_at - i.started_at).total_seconds()
        for i in incidents
        if i.ended_at is not None and window.start <= i.ended_at < window.end
    ]
    # Working-hour downtime of the merged downtime, so overlapping incidents never count twice.
    working = _working_seconds(calendar, clip_spans(down, monitored))
    return TargetSla(
        name=name,
        monitored_seconds=figures.monitored_seconds,
        downtime_seconds=figures.downtime_seconds,
        uptime_ratio=figures.uptime_ratio,
        incidents=tuple(lines),
        mttr_seconds=sum(ended) / len(ended) if ended else None,
        downtime_working_seconds=working,
        downtime_off_hours_seconds=max(0.0, figures.downtime_seconds - working),
        unmonitored_seconds=coverage.unmonitored_seconds if coverage else 0.0,
    )


def _working_seconds(calendar: WorkingCalendar, spans: list[Span]) -> float:
    return sum(max(0.0, calendar.working_time_between(s.start, s.end).total_seconds()) for s in spans)


async def unit_figures(dossiers: DossierStore, window: Span) -> tuple[UnitSla, ...]:
    """Per unit: returns by timeliness in `window`, overdue crossings (and those during outages), postal."""
    returned = await dossiers.returns_by_unit(window.start, window.end)
    returns = {summary.unit_code: summary for summary in returned}
    overdue = await dossiers.overdue_by_unit(window.start, window.end)
    names = await dossiers.unit_names() if set(overdue) - set(returns) else {}
    units = []
    for code in sorted(set(returns) | set(overdue)):
        summary = returns.get(code)
        counts = summary.returned if summary is not None else {}
        late_count, during = overdue.get(code, (0, 0))
        early, on_time, late = counts.get("early", 0), counts.get("on_time", 0), counts.get("late", 0)
        units.append(
            UnitSla(
                code=code,
                name=summary.unit_name if summary is not None else names.get(code, code),
                early=early,
                on_time=on_time,
                late=late,
                other=sum(counts.values()) - early - on_time - late,
                overdue=late_count,
                overdue_during_outage=during,
                postal=summary.via_postal if summary is not None else 0,
            )
        )
    return tuple(units)
