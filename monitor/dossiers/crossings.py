"""Threshold crossings: recorded exactly once by the database, and read back for history and reports.

`(code, threshold, due_at)` is unique (migration 2) and a crossing is inserted with `ON CONFLICT DO
NOTHING`; only the rows this call created come back, and only those are published. On PostgreSQL they
come back through `RETURNING id`: two replicas evaluating the same dossier at the same moment publish it
once, because the second insert waits for the first transaction and then finds the row (the writers of
one source also take turns, see writes.py). On SQLite the transaction holds the file's write lock
(`BEGIN IMMEDIATE`) and INTEGER PRIMARY KEY ids only grow, so the rows above the largest id before the
insert are exactly this call's: executemany then runs in C, faster than multi-row `RETURNING` statements.
No round trip per crossing on either engine (PostgreSQL: one COPY and one statement).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from monitor.dossiers.rows import CROSSING_COLUMNS, CrossingRecord, NewCrossing, crossing_record, epoch
from monitor.dossiers.writes import copy_rows, source_turns
from monitor.store.engine import POSTGRESQL
from monitor.store.sql import SqlStore

__all__ = [
    "crossing_history",
    "overdue_by_unit",
    "overdue_during_outage",
    "overdue_outage_totals",
    "record_crossings",
    "recorded_crossings",
]

_COLUMNS = (
    "code, unit_code, threshold, due_at, crossed_at, working_seconds_left, outage_overlap,"
    " outage_incident_ids, suppressed"
)
_CONFLICT = " ON CONFLICT (code, threshold, due_at) DO NOTHING"
_SQLITE_INSERT = f"INSERT INTO dossier_crossings ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?){_CONFLICT}"
# PostgreSQL: COPY into a session's temporary table, then one statement in key order, so two writers
# never wait on each other's keys in a cycle (executemany is a round trip per row there, and psycopg
# parses a long multi-row VALUES statement anew each time: both several times slower).
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS crossings_stage (code TEXT, unit_code TEXT, threshold TEXT,"
    " due_at BIGINT, crossed_at BIGINT, working_seconds_left BIGINT, outage_overlap BIGINT,"
    " outage_incident_ids TEXT, suppressed BIGINT) ON COMMIT DELETE ROWS"
)
_PG_INSERT = (
    f"INSERT INTO dossier_crossings ({_COLUMNS}) SELECT {_COLUMNS} FROM crossings_stage"
    f" ORDER BY code, threshold, due_at{_CONFLICT} RETURNING id, code, threshold, due_at"
)


async def record_crossings(store: SqlStore, crossings: Sequence[NewCrossing]) -> list[int | None]:
    """Insert each crossing unless already recorded; its new row id, or None when it was not new."""
    if not crossings:
        return []
    async with store.transaction("crossing") as conn:
        if store.dialect == POSTGRESQL:
            await source_turns(conn, store.dialect, await _sources(conn, crossings))
            await copy_rows(conn, _STAGE, "crossings_stage", _COLUMNS, map(_params, crossings))
            rows = await conn.execute_fetchall(_PG_INSERT)
        else:
            [(before,)] = await conn.execute_fetchall("SELECT coalesce(max(id), 0) FROM dossier_crossings")
            await conn.executemany(_SQLITE_INSERT, [_params(c) for c in crossings])
            rows = await conn.execute_fetchall(
                "SELECT id, code, threshold, due_at FROM dossier_crossings WHERE id > ?", (before,)
            )
        new = {(code, threshold, due_at): row_id for row_id, code, threshold, due_at in rows}
        overdue = sorted(
            (c.code, None if c.outage_overlap is None else int(c.outage_overlap), _ids(c))
            for c in crossings
            if c.threshold == "overdue" and not c.suppressed and (c.code, c.threshold, c.due_at) in new
        )
        if overdue:
            await conn.executemany(
                "UPDATE dossiers SET overdue_outage = ?2, outage_incident_ids = ?3 WHERE code = ?1", overdue
            )
    # A crossing listed twice in one call is new only once.
    return [new.pop((c.code, c.threshold, c.due_at), None) for c in crossings]


async def _sources(conn: Any, crossings: Sequence[NewCrossing]) -> set[str]:
    """The sources of the crossings' dossiers: as given, else (a caller that left one out) as stored."""
    sources = {c.source for c in crossings}
    if "" in sources:
        sources.discard("")
        codes = sorted({c.code for c in crossings if not c.source})
        sql = "SELECT DISTINCT source FROM dossiers WHERE code = ANY(?)"
        rows = await conn.execute_fetchall(sql, (codes,))
        sources.update(source for (source,) in rows)
    return sources


def _ids(crossing: NewCrossing) -> str:
    return ",".join(map(str, crossing.outage_incident_ids))


def _params(c: NewCrossing) -> tuple[object, ...]:
    overlap = None if c.outage_overlap is None else int(c.outage_overlap)
    left = c.working_seconds_left
    flag = int(c.suppressed)
    return (c.code, c.unit_code, c.threshold, c.due_at, c.crossed_at, left, overlap, _ids(c), flag)


async def recorded_crossings(store: SqlStore) -> dict[str, set[tuple[str, int]]]:
    """(threshold, due_at) already recorded, per tracked dossier: never to be published again."""
    found: dict[str, set[tuple[str, int]]] = {}
    sql = (
        "SELECT c.code, c.threshold, c.due_at FROM dossier_crossings AS c JOIN dossiers AS d"
        " ON d.code = c.code WHERE d.status IN ('open', 'paused', 'vanished')"
    )
    async with store.reader.execute(sql) as cursor:
        async for code, threshold, due_at in cursor:
            found.setdefault(code, set()).add((threshold, due_at))
    return found


async def crossing_history(store: SqlStore, code: str) -> list[CrossingRecord]:
    """The crossing history of one dossier, oldest first."""
    rows = await store.reader.execute_fetchall(
        f"SELECT {CROSSING_COLUMNS} FROM dossier_crossings WHERE code = ? ORDER BY crossed_at, id", (code,)
    )
    return [crossing_record(row) for row in rows]


async def overdue_by_unit(store: SqlStore, since: datetime, until: datetime) -> dict[str, tuple[int, int]]:
    """Per unit, dossiers that turned overdue in [since, until), and how many of them while a
    dossier-system incident overlapped (the crossing's outage evidence)."""
    rows = await store.reader.execute_fetchall(
        "SELECT unit_code, count(DISTINCT code),"
        " count(DISTINCT CASE WHEN outage_overlap = 1 THEN code END) FROM dossier_crossings"
        " WHERE threshold = 'overdue' AND suppressed = 0 AND crossed_at >= ?"
        " AND crossed_at < ? GROUP BY unit_code",
        (epoch(since), epoch(until)),
    )
    return {unit: (overdue, during_outage) for unit, overdue, during_outage in rows}


async def overdue_outage_totals(store: SqlStore) -> dict[str, int]:
    """Overdue crossings with a dossier-system incident in the window before, per unit."""
    rows = await store.reader.execute_fetchall(
        "SELECT unit_code, count(*) FROM dossier_crossings WHERE threshold = 'overdue'"
        " AND outage_overlap = 1 AND suppressed = 0 GROUP BY unit_code"
    )
    return {unit: count for unit, count in rows}


async def overdue_during_outage(
    store: SqlStore, since: datetime, limit: int = 1000
) -> list[tuple[CrossingRecord, str]]:
    """Overdue crossings since `since` that an outage overlapped, newest first, with their codes."""
    rows = await store.reader.execute_fetchall(
        f"SELECT {CROSSING_COLUMNS}, code FROM dossier_crossings WHERE threshold = 'overdue'"
        " AND outage_overlap = 1 AND crossed_at >= ? ORDER BY crossed_at DESC, id DESC LIMIT ?",
        (epoch(since), limit),
    )
    return [(crossing_record(row), row[8]) for row in rows]
