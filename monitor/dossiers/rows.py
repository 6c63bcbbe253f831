"""Dossier and crossing rows as values, and the columns and state expression every query shares.

The deadline state is a function of the clock, so rows carry the instants where it changes (`soon_at`,
`due_day_at`, `deadline_at`) and readers (API, CLI, another process) compute it in SQL for any `now`
(`STATE_SQL`, written for both engines). Times are epoch seconds in the tables.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.dossiers.model import Dossier, DossierStatus

__all__ = [
    "CLOSED",
    "COLUMNS",
    "CROSSING_COLUMNS",
    "OPEN_STATES",
    "STATES",
    "CrossingRecord",
    "DossierRow",
    "NewCrossing",
    "SyncWrite",
    "Timeline",
    "TrackedDossier",
    "UnitSummary",
    "Upsert",
    "as_bool",
    "crossing_record",
    "dossier_from_row",
    "dossier_row",
    "epoch",
    "from_epoch",
    "shared_moments",
    "state_sql",
    "with_postal",
]

# Deadline states of tracked dossiers, and the other values the `state` filter accepts.
OPEN_STATES = ("on_track", "due_soon", "due_today", "overdue", "paused")
STATES = (*OPEN_STATES, "vanished", "finished", "cancelled")


def state_sql(now: str) -> str:
    """The deadline state of a row at `now` (a numbered placeholder such as "?1": both engines)."""
    return (
        "CASE WHEN status <> 'open' AND status <> 'paused' THEN status"
        " WHEN status = 'paused' THEN 'paused'"
        " WHEN deadline_at IS NULL THEN 'on_track'"
        f" WHEN deadline_at <= {now} THEN 'overdue'"
        f" WHEN due_day_at <= {now} THEN 'due_today'"
        f" WHEN soon_at <= {now} THEN 'due_soon'"
        " ELSE 'on_track' END"
    )


COLUMNS = (
    "code, source, status, source_status, raw_status, unit_code, unit_name, procedure_code, procedure_name,"
    " assignee_id, assignee_name, received_at, due_at, extended_due_at, duration_days, duration_hours,"
    " released_at, finished_at, modified_at, via_postal, online, deadline_at, soon_at, due_day_at,"
    " missed_full_syncs, first_seen, last_seen, returned_at, timeliness, finished_seen_at"
)
CLOSED = (DossierStatus.FINISHED, DossierStatus.CANCELLED)
CROSSING_COLUMNS = (
    "id, threshold, due_at, crossed_at, working_seconds_left, suppressed, outage_overlap, outage_incident_ids"
)


def epoch(value: datetime | None) -> int | None:
    return None if value is None else round(value.timestamp())


def from_epoch(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class Timeline:
    """Instants (epoch seconds) where a dossier's deadline state changes; shared by equal due dates."""

    deadline: float
    # (threshold key, instant), largest threshold first, ending with ("overdue", deadline).
    crossings: tuple[tuple[str, float], ...]
    due_day: float

    @property
    def soon(self) -> float:
        return self.crossings[0][1] if len(self.crossings) > 1 else self.deadline


# Mutable on purpose: one per tracked dossier, updated in place by every sync (100,000 of them).
@dataclass(slots=True)
class TrackedDossier:
    """A dossier the monitor follows: open, paused, or vanished from the source's listings."""

    dossier: Dossier
    missed: int = 0
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class Upsert:
    """One dossier row to write, with its tracking status and, when finished, its verdict."""

    dossier: Dossier
    status: str
    missed: int = 0
    timeline: Timeline | None = None
    timeliness: str | None = None


@dataclass(frozen=True, slots=True)
class SyncWrite:
    """Everything one successful sync changes, written in one transaction."""

    now: datetime
    upserts: Sequence[Upsert] = ()
    # (code, missed count) for tracked dossiers absent from a full listing.
    missed: Sequence[tuple[str, int]] = ()
    vanished: Sequence[str] = ()
    # Set on a full reconcile: every present, unchanged row of this source gets last_seen = now.
    full_source: str | None = None

    @property
    def sources(self) -> list[str]:
        """The sources whose rows this write touches, sorted (the order writers lock them in)."""
        found = {upsert.dossier.source for upsert in self.upserts}
        if self.full_source is not None:
            found.add(self.full_source)
        return sorted(found)


@dataclass(frozen=True, slots=True)
class NewCrossing:
    """A crossing the engine wants recorded (and published unless suppressed)."""

    code: str
    unit_code: str
    threshold: str
    due_at: int
    crossed_at: int
    working_seconds_left: int
    suppressed: bool = False
    outage_overlap: bool | None = None
    outage_incident_ids: tuple[int, ...] = ()
    # The dossier's source: on PostgreSQL writers of one source's rows take turns (crossings.py);
    # left out, it is read from the store (one more query).
    source: str = ""


@dataclass(frozen=True, slots=True)
class CrossingRecord:
    """A stored crossing, for a dossier's history."""

    id: int
    threshold: str
    due_at: datetime
    crossed_at: datetime
    working_seconds_left: int
    suppressed: bool
    outage_overlap: bool | None
    outage_incident_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DossierRow:
    """A stored dossier with its state at the time of the query."""

    code: str
    source: str
    status: str
    state: str
    unit_code: str
    unit_name: str
    procedure_code: str
    procedure_name: str
    assignee_id: str
    assignee_name: str
    received_at: datetime | None
    due_at: datetime | None
    deadline_at: datetime | None
    released_at: datetime | None
    finished_at: datetime | None
    via_postal: bool
    missed_full_syncs: int
    first_seen: datetime
    last_seen: datetime
    timeliness: str | None
    overdue_outage: bool | None
    outage_incident_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class UnitSummary:
    """One unit: tracked dossiers per state and, over the window, returns by timeliness."""

    unit_code: str
    unit_name: str
    states: dict[str, int] = field(default_factory=dict)
    returned: dict[str, int] = field(default_factory=dict)
    via_postal: int = 0

    @property
    def returned_total(self) -> int:
        return sum(self.returned.get(key, 0) for key in ("early", "on_time", "late"))

    @property
    def on_time_ratio(self) -> float | None:
        total = self.returned_total
        return (
            None if not total else (self.returned.get("early", 0) + self.returned.get("on_time", 0)) / total
        )

    @property
    def postal_ratio(self) -> float | None:
        total = sum(self.returned.values())
        return None if not total else self.via_postal / total


def _ids(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in (text or "").split(",") if part)


def as_bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def dossier_from_row(
    row: Sequence[Any], moment: Callable[[int | None], datetime | None] = from_epoch
) -> Dossier:
    (code, source, _status, source_status, raw_status, unit_code, unit_name, procedure_code, procedure_name,
     assignee_id, assignee_name, received_at, due_at, extended_due_at, duration_days, duration_hours,
     released_at, finished_at, modified_at, via_postal, online) = row[:21]  # fmt: skip
    intern = sys.intern
    # SQLite hands out a fresh copy of every string per row: share the repeated ones, as sources do.
    return Dossier(
        code=code,
        source=intern(source),
        unit_code=intern(unit_code),
        status=DossierStatus(source_status),
        raw_status=intern(raw_status),
        unit_name=intern(unit_name),
        procedure_code=intern(procedure_code),
        procedure_name=intern(procedure_name),
        assignee_id=intern(assignee_id),
        assignee_name=intern(assignee_name),
        received_at=moment(received_at),
        due_at=moment(due_at),
        duration_days=duration_days,
        duration_hours=duration_hours,
        extended_due_at=moment(extended_due_at),
        released_at=moment(released_at),
        finished_at=moment(finished_at),
        via_postal=bool(via_postal),
        online=as_bool(online),
        modified_at=moment(modified_at),
    )


def shared_moments() -> Callable[[int | None], datetime | None]:
    """from_epoch with one datetime per distinct instant (due dates cluster on quarter hours)."""
    seen: dict[int, datetime] = {}

    def moment(value: int | None) -> datetime | None:
        if value is None:
            return None
        found = seen.get(value)
        if found is None:
            found = seen[value] = datetime.fromtimestamp(value, UTC)
        return found

    return moment


def with_postal(summary: UnitSummary, postal: int) -> UnitSummary:
    return UnitSummary(summary.unit_code, summary.unit_name, summary.states, summary.returned, postal)


def crossing_record(row: Sequence[Any]) -> CrossingRecord:
    """A crossing from the `CROSSING_COLUMNS` of a row."""
    return CrossingRecord(
        id=row[0],
        threshold=row[1],
        due_at=from_epoch(row[2]),  # type: ignore[arg-type]
        crossed_at=from_epoch(row[3]),  # type: ignore[arg-type]
        working_seconds_left=row[4],
        suppressed=bool(row[5]),
        outage_overlap=as_bool(row[6]),
        outage_incident_ids=_ids(row[7]),
    )


def dossier_row(row: Sequence[Any]) -> DossierRow:
    """A dossier from `COLUMNS`, then its state, overdue_outage and outage_incident_ids."""
    return DossierRow(
        code=row[0],
        source=row[1],
        status=row[2],
        state=row[30],
        unit_code=row[5],
        unit_name=row[6],
        procedure_code=row[7],
        procedure_name=row[8],
        assignee_id=row[9],
        assignee_name=row[10],
        received_at=from_epoch(row[11]),
        due_at=from_epoch(row[12]),
        deadline_at=from_epoch(row[21]),
        released_at=from_epoch(row[16]),
        finished_at=from_epoch(row[17]),
        via_postal=bool(row[19]),
        missed_full_syncs=row[24],
        first_seen=from_epoch(row[25]),  # type: ignore[arg-type]
        last_seen=from_epoch(row[26]),  # type: ignore[arg-type]
        timeliness=row[28],
        overdue_outage=as_bool(row[31]),
        outage_incident_ids=_ids(row[32]),
    )
