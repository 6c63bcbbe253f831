"""Due times and timelines: when each dossier's deadline state changes, planned once per due time.

A timeline (the instants of every threshold crossing, the start of the due day, the due time) depends
only on the calendar and the due time, so dossiers sharing both share one timeline object: a million
open dossiers typically share a few thousand. What a timeline means at an instant (state, crossings
passed, next instant) is a `Verdict`, likewise computed once per timeline per evaluation pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.calendar import Calendars, WorkingCalendar
from monitor.dossiers.config import WorkingAmount, parse_working_amount
from monitor.dossiers.model import Dossier, DossierStatus
from monitor.dossiers.store import Timeline

__all__ = ["DeadlinePlanner", "Verdict", "deadline_state", "working_amounts"]

# Timelines kept before the cache starts over (a few thousand are live at a million dossiers).
_TIMELINE_CACHE = 200_000


def working_amounts(values: Sequence[str | WorkingAmount]) -> tuple[WorkingAmount, ...]:
    """Thresholds as given in config (`"2d"`) or already parsed."""
    return tuple(
        value if isinstance(value, WorkingAmount) else parse_working_amount(value) for value in values
    )


def deadline_state(timeline: Timeline, now: float) -> str:
    """on_track, due_soon, due_today or overdue at epoch second `now` (due_today beats due_soon)."""
    if now >= timeline.deadline:
        return "overdue"
    if now >= timeline.due_day:
        return "due_today"
    if now >= timeline.soon:
        return "due_soon"
    return "on_track"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one timeline means at one instant: the same for every dossier sharing it."""

    timeline: Timeline
    state: str
    # (threshold, due_at epoch seconds) of every crossing at or before now, in crossing order. Shared:
    # every dossier's record of crossings points at these few tuples.
    passed: tuple[tuple[str, int], ...]
    next_at: float | None

    @classmethod
    def at(cls, timeline: Timeline, now_ts: float) -> Verdict:
        next_at = None
        passed: list[str] = []
        for name, ts in timeline.crossings:
            if ts > now_ts:
                next_at = ts
                break
            passed.append(name)
        due_day = timeline.due_day
        if now_ts < due_day and (next_at is None or due_day < next_at):
            next_at = due_day
        due_key = round(timeline.deadline)
        passed_keys = tuple((name, due_key) for name in passed)
        return cls(timeline, deadline_state(timeline, now_ts), passed_keys, next_at)


class DeadlinePlanner:
    """Calendars and thresholds turned into due times and (cached) timelines."""

    def __init__(self, calendars: Calendars, thresholds: Sequence[str | WorkingAmount]) -> None:
        self.calendars = calendars
        self.thresholds = working_amounts(thresholds)
        self._calendar_by_key: dict[tuple[str, str], WorkingCalendar] = {}
        self._amounts: dict[str, tuple[tuple[str, float], ...]] = {}
        # calendar name -> due time -> timeline. Keyed on the datetime itself: its hash is cached on the
        # object and sources share one object per due-date text, so a hit costs no timestamp() call.
        self._timelines: dict[str, dict[datetime, Timeline]] = {}
        self._timeline_count = 0
        # (unit, procedure) -> (calendar, its due time -> timeline dict): one lookup per dossier.
        self._plans: dict[tuple[str, str], tuple[WorkingCalendar, dict[datetime, Timeline]]] = {}

    def reset(
        self, calendars: Calendars | None = None, thresholds: Sequence[str | WorkingAmount] | None = None
    ) -> None:
        """Forget every cached calendar, amount and timeline (a reload), adopting what is given."""
        if calendars is not None:
            self.calendars = calendars
        if thresholds is not None:
            self.thresholds = working_amounts(thresholds)
        self._calendar_by_key.clear()
        self._amounts.clear()
        self._timelines.clear()
        self._timeline_count = 0
        self._plans.clear()

    def calendar_for(self, unit_code: str, procedure_code: str) -> WorkingCalendar:
        key = (unit_code, procedure_code)
        calendar = self._calendar_by_key.get(key)
        if calendar is None:
            calendar = self._calendar_by_key[key] = self.calendars.for_dossier(unit_code, procedure_code)
        return calendar

    def plan(self, dossier: Dossier) -> tuple[WorkingCalendar, Timeline | None]:
        """The dossier's calendar and timeline (None without a due time): the evaluation's hot path."""
        found = self._plans.get((dossier.unit_code, dossier.procedure_code))
        if found is None:
            calendar = self.calendar_for(dossier.unit_code, dossier.procedure_code)
            found = self._plans[(dossier.unit_code, dossier.procedure_code)] = (
                calendar,
                self._timelines_of(calendar),
            )
        calendar, by_due = found
        due = dossier.effective_due_at
        if due is None:
            due = self.due_at(dossier, calendar)
            if due is None:
                return calendar, None
        timeline = by_due.get(due)
        return calendar, timeline if timeline is not None else self.timeline_at(calendar, due)

    def due_at(self, dossier: Dossier, calendar: WorkingCalendar | None = None) -> datetime | None:
        """The effective due time, computed in working time when the source gives only a duration."""
        due = dossier.effective_due_at
        if due is not None or dossier.received_at is None:
            return due
        if not (dossier.duration_days or dossier.duration_hours):
            return None
        calendar = calendar or self.calendar_for(dossier.unit_code, dossier.procedure_code)
        return calendar.due_date(
            dossier.received_at, days=dossier.duration_days or 0, hours=dossier.duration_hours or 0
        )

    def timeline(self, dossier: Dossier) -> Timeline | None:
        """When the dossier's state changes (shared by every dossier with the same calendar and due time)."""
        return self.plan(dossier)[1]

    def _amounts_for(self, calendar: WorkingCalendar) -> tuple[tuple[str, float], ...]:
        amounts = self._amounts.get(calendar.name)
        if amounts is None:
            per_day = calendar.hours_per_day
            # Largest first: that is the order in which a dossier crosses them.
            amounts = tuple(
                sorted(((a.key, a.hours_in(per_day)) for a in self.thresholds), key=lambda kv: -kv[1])
            )
            self._amounts[calendar.name] = amounts
        return amounts

    def _timelines_of(self, calendar: WorkingCalendar) -> dict[datetime, Timeline]:
        by_due = self._timelines.get(calendar.name)
        if by_due is None:
            by_due = self._timelines[calendar.name] = {}
        return by_due

    def timeline_at(self, calendar: WorkingCalendar, due: datetime) -> Timeline:
        """The (cached) timeline of a due time in a calendar."""
        by_due = self._timelines_of(calendar)
        timeline = by_due.get(due)
        if timeline is None:
            due_ts = due.timestamp()
            crossings = tuple(
                (name, calendar.add_working_time(due, hours=-hours).timestamp())
                for name, hours in self._amounts_for(calendar)
            )
            local = due.astimezone(calendar.zone)
            midnight = datetime(local.year, local.month, local.day, tzinfo=calendar.zone).timestamp()
            timeline = Timeline(due_ts, (*crossings, ("overdue", due_ts)), midnight)
            if self._timeline_count >= _TIMELINE_CACHE:
                # Start over: the plans hold the old dicts, so they go too.
                self._timelines.clear()
                self._plans.clear()
                self._timeline_count = 0
                by_due = self._timelines_of(calendar)
            by_due[due] = timeline
            self._timeline_count += 1
        return timeline

    def working_time_left(self, dossier: Dossier, now: datetime) -> timedelta | None:
        calendar = self.calendar_for(dossier.unit_code, dossier.procedure_code)
        due = self.due_at(dossier, calendar)
        return None if due is None else calendar.working_time_between(now, due)

    def classify(self, dossier: Dossier) -> str | None:
        """early / on_time / late for a returned dossier (OpenCPS half-day rule); None when it cannot be."""
        returned = dossier.returned_at
        if dossier.status is not DossierStatus.FINISHED or returned is None:
            return None
        calendar = self.calendar_for(dossier.unit_code, dossier.procedure_code)
        due = self.due_at(dossier, calendar)
        return None if due is None else calendar.classify_return(due, returned).value
