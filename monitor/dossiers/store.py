"""Dossiers and their threshold crossings in the SQLite store (tables from migration 2, "dossiers").

The sync manager writes a whole batch in one transaction; the deadline engine records crossings with
INSERT OR IGNORE on (code, threshold, due_at), so a crossing is stored, and published, at most once even
across restarts. Tracked dossiers (open, paused, vanished) are also kept in memory, because every sync
compares each listed dossier with what was last stored and must not touch the disk for unchanged ones.

The deadline state is a function of the clock, so rows carry the instants where it changes (`soon_at`,
`due_day_at`, `deadline_at`) and readers (API, CLI, another process) compute it in SQL for any `now`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.dossiers.model import Dossier, DossierStatus
from monitor.store.sql import SqlStore

__all__ = [
    "OPEN_STATES",
    "STATES",
    "CrossingRecord",
    "DossierRow",
    "DossierStore",
    "NewCrossing",
    "SyncWrite",
    "Timeline",
    "TrackedDossier",
    "UnitSummary",
    "Upsert",
    "epoch",
    "from_epoch",
]

# Deadline states of tracked dossiers, and the other values the `state` filter accepts.
OPEN_STATES = ("on_track", "due_soon", "due_today", "overdue", "paused")
STATES = (*OPEN_STATES, "vanished", "finished", "cancelled")

_STATE_SQL = (
    "CASE WHEN status <> 'open' AND status <> 'paused' THEN status"
    " WHEN status = 'paused' THEN 'paused'"
    " WHEN deadline_at IS NULL THEN 'on_track'"
    " WHEN deadline_at <= :now THEN 'overdue'"
    " WHEN due_day_at <= :now THEN 'due_today'"
    " WHEN soon_at <= :now THEN 'due_soon'"
    " ELSE 'on_track' END"
)
_COLUMNS = (
    "code, source, status, source_status, raw_status, unit_code, unit_name, procedure_code, procedure_name,"
    " assignee_id, assignee_name, received_at, due_at, extended_due_at, duration_days, duration_hours,"
    " released_at, finished_at, modified_at, via_postal, online, deadline_at, soon_at, due_day_at,"
    " missed_full_syncs, first_seen, last_seen, returned_at, timeliness, finished_seen_at"
)
_UPSERT = (
    f"INSERT INTO dossiers ({_COLUMNS}) VALUES ({', '.join('?' * 30)})"
    " ON CONFLICT (code) DO UPDATE SET source = excluded.source, status = excluded.status,"
    " source_status = excluded.source_status, raw_status = excluded.raw_status,"
    " unit_code = excluded.unit_code, unit_name = excluded.unit_name,"
    " procedure_code = excluded.procedure_code, procedure_name = excluded.procedure_name,"
    " assignee_id = excluded.assignee_id, assignee_name = excluded.assignee_name,"
    " received_at = excluded.received_at, due_at = excluded.due_at,"
    " extended_due_at = excluded.extended_due_at, duration_days = excluded.duration_days,"
    " duration_hours = excluded.duration_hours, released_at = excluded.released_at,"
    " finished_at = excluded.finished_at, modified_at = excluded.modified_at,"
    " via_postal = excluded.via_postal, online = excluded.online, deadline_at = excluded.deadline_at,"
    " soon_at = excluded.soon_at, due_day_at = excluded.due_day_at,"
    " missed_full_syncs = excluded.missed_full_syncs, last_seen = excluded.last_seen,"
    # Classified once: a finished dossier that changes again keeps its first verdict.
    " returned_at = coalesce(dossiers.returned_at, excluded.returned_at),"
    " timeliness = coalesce(dossiers.timeliness, excluded.timeliness),"
    " finished_seen_at = coalesce(dossiers.finished_seen_at, excluded.finished_seen_at)"
)
_CLOSED = (DossierStatus.FINISHED, DossierStatus.CANCELLED)
_CHUNK = 2000


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


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _dossier_from_row(
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
        online=_bool(online),
        modified_at=moment(modified_at),
    )


def _shared_moments() -> Callable[[int | None], datetime | None]:
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


def _upsert_params(upsert: Upsert, now: int) -> tuple[Any, ...]:
    d = upsert.dossier
    timeline = upsert.timeline
    finished = d.status in _CLOSED
    return (
        d.code,
        d.source,
        upsert.status,
        d.status.value,
        d.raw_status,
        d.unit_code,
        d.unit_name,
        d.procedure_code,
        d.procedure_name,
        d.assignee_id,
        d.assignee_name,
        epoch(d.received_at),
        epoch(d.due_at),
        epoch(d.extended_due_at),
        d.duration_days,
        d.duration_hours,
        epoch(d.released_at),
        epoch(d.finished_at),
        epoch(d.modified_at),
        int(d.via_postal),
        None if d.online is None else int(d.online),
        None if timeline is None else round(timeline.deadline),
        None if timeline is None else round(timeline.soon),
        None if timeline is None else round(timeline.due_day),
        upsert.missed,
        now,
        now,
        epoch(d.returned_at) if finished else None,
        upsert.timeliness if finished else None,
        now if finished else None,
    )


class DossierStore:
    """Dossier rows and crossings on a `SqlStore` (writer for writes, reader for queries)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        # Filled by load(): what the sync manager compares each listing with.
        self.tracked: dict[str, TrackedDossier] = {}
        self.closed: dict[str, int] = {}

    # --- loading ------------------------------------------------------------------------------------

    async def load(self, sources: Collection[str] | None = None) -> None:
        """Read tracked dossiers and the fingerprints of closed ones into memory (at start-up). With
        `sources` (a replica taking sources over), read only theirs and merge them into memory."""
        tracked: dict[str, TrackedDossier] = {}
        closed: dict[str, int] = {}
        reader = self.store.reader
        moment = _shared_moments()
        sql, params = f"SELECT {_COLUMNS} FROM dossiers", None
        if sources is not None:
            if not sources:
                return
            sql += f" WHERE source IN ({', '.join('?' * len(sources))})"
            params = list(sources)
        async with reader.execute(sql, params) as cursor:
            async for row in cursor:
                dossier = _dossier_from_row(row, moment)
                status = row[2]
                if status in ("finished", "cancelled"):
                    closed[dossier.code] = hash(dossier)
                else:
                    tracked[dossier.code] = TrackedDossier(dossier, row[24], status == "vanished")
        if sources is None:
            self.tracked, self.closed = tracked, closed
            return
        self.forget(sources)
        self.tracked.update(tracked)
        self.closed.update(closed)

    def forget(self, sources: Collection[str]) -> list[str]:
        """Drop the tracked dossiers of `sources` from memory (another replica syncs them now); returns
        their codes. Closed fingerprints stay: they only save re-writing an unchanged closed dossier."""
        codes = [code for code, known in self.tracked.items() if known.dossier.source in sources]
        for code in codes:
            del self.tracked[code]
        return codes

    async def recorded_crossings(self) -> dict[str, set[tuple[str, int]]]:
        """(threshold, due_at) already recorded, per tracked dossier: never to be published again."""
        found: dict[str, set[tuple[str, int]]] = {}
        sql = (
            "SELECT c.code, c.threshold, c.due_at FROM dossier_crossings AS c JOIN dossiers AS d"
            " ON d.code = c.code WHERE d.status IN ('open', 'paused', 'vanished')"
        )
        async with self.store.reader.execute(sql) as cursor:
            async for code, threshold, due_at in cursor:
                found.setdefault(code, set()).add((threshold, due_at))
        return found

    # --- writing ------------------------------------------------------------------------------------

    async def write_sync(self, write: SyncWrite) -> None:
        """Apply one successful sync in a single transaction."""
        now = epoch(write.now) or 0
        async with self.store.transaction("sync") as conn:
            # In chunks: 100,000 rows of parameters at once would double the daemon's peak memory.
            for start in range(0, len(write.upserts), _CHUNK):
                chunk = write.upserts[start : start + _CHUNK]
                await conn.executemany(_UPSERT, [_upsert_params(upsert, now) for upsert in chunk])
            if write.missed:
                await conn.executemany(
                    "UPDATE dossiers SET missed_full_syncs = ? WHERE code = ?",
                    [(missed, code) for code, missed in write.missed],
                )
            if write.vanished:
                await conn.executemany(
                    "UPDATE dossiers SET status = 'vanished' WHERE code = ?",
                    [(code,) for code in write.vanished],
                )
            if write.full_source is not None:
                await conn.execute(
                    "UPDATE dossiers SET last_seen = ? WHERE source = ? AND status IN ('open', 'paused')"
                    " AND missed_full_syncs = 0 AND last_seen < ?",
                    (now, write.full_source, now),
                )

    async def record_crossings(self, crossings: Sequence[NewCrossing]) -> list[int | None]:
        """Insert each crossing unless already recorded; its new row id, or None when it was not new."""
        if not crossings:
            return []
        async with self.store.transaction("crossing") as conn:
            # Inside this write transaction nobody else inserts, and INTEGER PRIMARY KEY ids only grow:
            # the rows above the current maximum afterwards are exactly the new ones (no per-row round trip).
            rows = await conn.execute_fetchall("SELECT coalesce(max(id), 0) FROM dossier_crossings")
            before = rows[0][0]
            await conn.executemany(
                "INSERT INTO dossier_crossings (code, unit_code, threshold, due_at, crossed_at,"
                " working_seconds_left, outage_overlap, outage_incident_ids, suppressed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (code, threshold, due_at) DO NOTHING",
                [
                    (
                        c.code,
                        c.unit_code,
                        c.threshold,
                        c.due_at,
                        c.crossed_at,
                        c.working_seconds_left,
                        None if c.outage_overlap is None else int(c.outage_overlap),
                        ",".join(map(str, c.outage_incident_ids)),
                        int(c.suppressed),
                    )
                    for c in crossings
                ],
            )
            rows = await conn.execute_fetchall(
                "SELECT id, code, threshold, due_at FROM dossier_crossings WHERE id > ?", (before,)
            )
            new = {(code, threshold, due_at): row_id for row_id, code, threshold, due_at in rows}
            overdue = [
                (
                    None if c.outage_overlap is None else int(c.outage_overlap),
                    ",".join(map(str, c.outage_incident_ids)),
                    c.code,
                )
                for c in crossings
                if c.threshold == "overdue" and not c.suppressed and (c.code, c.threshold, c.due_at) in new
            ]
            if overdue:
                await conn.executemany(
                    "UPDATE dossiers SET overdue_outage = ?, outage_incident_ids = ? WHERE code = ?", overdue
                )
        # A crossing listed twice in one call is new only once.
        ids: list[int | None] = []
        for c in crossings:
            ids.append(new.pop((c.code, c.threshold, c.due_at), None))
        return ids

    # --- queries ------------------------------------------------------------------------------------

    async def list_dossiers(
        self,
        now: datetime,
        *,
        state: str | None = None,
        unit: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[DossierRow]:
        """Dossiers ordered by code, after `after` (keyset). No state = open and paused ones."""
        params: dict[str, Any] = {"now": epoch(now), "limit": limit}
        where = []
        if state is None:
            where.append("status IN ('open', 'paused')")
        elif state in ("vanished", "finished", "cancelled", "paused"):
            where.append("status = :status")
            params["status"] = state
        else:
            where.append(f"status = 'open' AND {_STATE_SQL} = :state")
            params["state"] = state
        if unit is not None:
            where.append("unit_code = :unit")
            params["unit"] = unit
        if after is not None:
            where.append("code > :after")
            params["after"] = after
        sql = (
            f"SELECT {_COLUMNS}, {_STATE_SQL}, overdue_outage, outage_incident_ids FROM dossiers"
            f" WHERE {' AND '.join(where)} ORDER BY code LIMIT :limit"
        )
        rows = await self.store.reader.execute_fetchall(sql, params)
        return [self._row(row) for row in rows]

    async def get(self, code: str, now: datetime) -> DossierRow | None:
        rows = await self.store.reader.execute_fetchall(
            f"SELECT {_COLUMNS}, {_STATE_SQL}, overdue_outage, outage_incident_ids FROM dossiers"
            " WHERE code = :code",
            {"code": code, "now": epoch(now)},
        )
        return self._row(rows[0]) if rows else None

    async def crossings(self, code: str) -> list[CrossingRecord]:
        """The crossing history of one dossier, oldest first."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT id, threshold, due_at, crossed_at, working_seconds_left, suppressed, outage_overlap,"
            " outage_incident_ids FROM dossier_crossings WHERE code = ? ORDER BY crossed_at, id",
            (code,),
        )
        return [
            CrossingRecord(
                id=row[0],
                threshold=row[1],
                due_at=from_epoch(row[2]),  # type: ignore[arg-type]
                crossed_at=from_epoch(row[3]),  # type: ignore[arg-type]
                working_seconds_left=row[4],
                suppressed=bool(row[5]),
                outage_overlap=_bool(row[6]),
                outage_incident_ids=_ids(row[7]),
            )
            for row in rows
        ]

    async def unit_summaries(self, now: datetime, since: datetime) -> list[UnitSummary]:
        """Per unit: tracked dossiers by state now, and dossiers returned since `since` by timeliness."""
        reader = self.store.reader
        units: dict[str, UnitSummary] = {}

        def unit(code: str, name: str) -> UnitSummary:
            summary = units.get(code)
            if summary is None:
                summary = units[code] = UnitSummary(code, name)
            return summary

        rows = await reader.execute_fetchall(
            f"SELECT unit_code, max(unit_name), {_STATE_SQL} AS state, count(*) FROM dossiers"
            " WHERE status IN ('open', 'paused', 'vanished') GROUP BY unit_code, state",
            {"now": epoch(now)},
        )
        for code, name, state, count in rows:
            unit(code, name).states[state] = count
        await self._add_returns(units, since, None)
        return sorted(units.values(), key=lambda summary: summary.unit_code)

    async def returns_by_unit(self, since: datetime, until: datetime) -> list[UnitSummary]:
        """Per unit, dossiers returned in [since, until) by timeliness, with the postal count (no states)."""
        units: dict[str, UnitSummary] = {}
        await self._add_returns(units, since, until)
        return sorted(units.values(), key=lambda summary: summary.unit_code)

    async def _add_returns(
        self, units: dict[str, UnitSummary], since: datetime, until: datetime | None
    ) -> None:
        bound = "" if until is None else " AND returned_at < :until"
        rows = await self.store.reader.execute_fetchall(
            "SELECT unit_code, max(unit_name), coalesce(timeliness, 'none'), count(*), sum(via_postal)"
            f" FROM dossiers WHERE status IN ('finished', 'cancelled') AND returned_at >= :since{bound}"
            " GROUP BY unit_code, timeliness",
            {"since": epoch(since), "until": epoch(until)},
        )
        for code, name, timeliness, count, postal in rows:
            summary = units.get(code) or UnitSummary(code, name)
            summary.returned[timeliness] = count
            # Dataclass is frozen; the postal count accumulates through a replace.
            units[code] = _with_postal(summary, summary.via_postal + (postal or 0))

    async def overdue_by_unit(self, since: datetime, until: datetime) -> dict[str, tuple[int, int]]:
        """Per unit, dossiers that turned overdue in [since, until), and how many of them while a
        dossier-system incident overlapped (the crossing's outage evidence)."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT unit_code, count(DISTINCT code),"
            " count(DISTINCT CASE WHEN outage_overlap = 1 THEN code END) FROM dossier_crossings"
            " WHERE threshold = 'overdue' AND suppressed = 0 AND crossed_at >= ?"
            " AND crossed_at < ? GROUP BY unit_code",
            (epoch(since), epoch(until)),
        )
        return {unit: (overdue, during_outage) for unit, overdue, during_outage in rows}

    async def unit_names(self) -> dict[str, str]:
        """The latest name seen for each unit code."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT unit_code, max(unit_name) FROM dossiers GROUP BY unit_code"
        )
        return {code: name for code, name in rows}

    async def finished_totals(self, procedure: bool = False) -> dict[tuple[str, ...], int]:
        """Finished dossiers ever stored by (unit, timeliness[, procedure])."""
        group = "unit_code, timeliness" + (", procedure_code" if procedure else "")
        rows = await self.store.reader.execute_fetchall(
            f"SELECT {group}, count(*) FROM dossiers WHERE status = 'finished' AND timeliness IS NOT NULL"
            f" GROUP BY {group}"
        )
        return {tuple(row[:-1]): row[-1] for row in rows}

    async def overdue_outage_totals(self) -> dict[str, int]:
        """Overdue crossings with a dossier-system incident in the window before, per unit."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT unit_code, count(*) FROM dossier_crossings WHERE threshold = 'overdue'"
            " AND outage_overlap = 1 AND suppressed = 0 GROUP BY unit_code"
        )
        return {unit: count for unit, count in rows}

    async def overdue_during_outage(
        self, since: datetime, limit: int = 1000
    ) -> list[tuple[CrossingRecord, str]]:
        """Overdue crossings since `since` that an outage overlapped, newest first, with their codes."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT id, threshold, due_at, crossed_at, working_seconds_left, suppressed, outage_overlap,"
            " outage_incident_ids, code FROM dossier_crossings WHERE threshold = 'overdue'"
            " AND outage_overlap = 1 AND crossed_at >= ? ORDER BY crossed_at DESC, id DESC LIMIT ?",
            (epoch(since), limit),
        )
        return [
            (
                CrossingRecord(
                    row[0],
                    row[1],
                    from_epoch(row[2]),  # type: ignore[arg-type]
                    from_epoch(row[3]),  # type: ignore[arg-type]
                    row[4],
                    bool(row[5]),
                    _bool(row[6]),
                    _ids(row[7]),
                ),
                row[8],
            )
            for row in rows
        ]

    @staticmethod
    def _row(row: Sequence[Any]) -> DossierRow:
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
            overdue_outage=_bool(row[31]),
            outage_incident_ids=_ids(row[32]),
        )


def _with_postal(summary: UnitSummary, postal: int) -> UnitSummary:
    return UnitSummary(summary.unit_code, summary.unit_name, summary.states, summary.returned, postal)
