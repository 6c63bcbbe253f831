"""Incidents: one row per outage of a target, at most one open per target (migration 7).

The partial unique index `incidents_open_one` makes "one open incident per target" a fact of the
database, not of one process's memory: a replica taking over a target whose owner died opens "its"
incident with `INSERT ... ON CONFLICT DO NOTHING` and gets the open one's id back, so the outage
continues as one incident. Two writers racing on PostgreSQL: the second insert waits for the first
transaction, does nothing, and its read-back (a fresh snapshot) sees the committed row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.store.base import Incident, StoreError
from monitor.store.engine import POSTGRESQL, SQLITE, pick
from monitor.store.targets import TargetRow, resolve_targets

__all__ = [
    "RETENTION",
    "close_incident",
    "incidents_overlapping",
    "open_incident",
    "open_incidents",
    "reopen_incident",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Closed incidents older than the cutoff (?1), a batch (?2) at a time: run by the store's retention.
RETENTION = (
    "DELETE FROM incidents WHERE id IN (SELECT id FROM incidents"
    " WHERE ended_at IS NOT NULL AND ended_at < ?1 LIMIT ?2)"
)

_OPEN = (
    "INSERT INTO incidents (target_id, started_at, reason, detail) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (target_id) WHERE ended_at IS NULL DO NOTHING RETURNING id"
)
_CLOSE = {
    SQLITE: "UPDATE incidents SET ended_at = max(started_at, ?) WHERE id = ? AND ended_at IS NULL"
    " RETURNING id",
    POSTGRESQL: "UPDATE incidents SET ended_at = GREATEST(started_at, ?) WHERE id = ? AND ended_at IS NULL"
    " RETURNING id",
}
_COLUMNS = (
    "SELECT i.id, t.name, i.started_at, i.ended_at, i.reason, i.detail FROM incidents AS i"
    " JOIN targets AS t ON t.id = i.target_id"
)


async def open_incident(
    conn: Any,
    targets: Mapping[str, TargetRow],
    target: str,
    started_ms: int,
    reason: str | None,
    detail: str,
) -> tuple[int, dict[str, TargetRow]]:
    """The id of `target`'s open incident, inserted unless one is open already (a takeover continues
    it); and the targets to add to the cache after the commit."""
    ids, added = await resolve_targets(conn, targets, {target: started_ms})
    target_id = ids[target]
    rows = await conn.execute_fetchall(_OPEN, (target_id, started_ms, reason, detail))
    if not rows:
        rows = await conn.execute_fetchall(
            "SELECT id FROM incidents WHERE target_id = ? AND ended_at IS NULL", (target_id,)
        )
    return int(rows[0][0]), added


async def close_incident(conn: Any, dialect: str, incident_id: int, ended_ms: int) -> None:
    """Set the end of an open incident; closing one already closed changes nothing."""
    rows = await conn.execute_fetchall(
        pick(dialect, sqlite=_CLOSE[SQLITE], postgresql=_CLOSE[POSTGRESQL]), (ended_ms, incident_id)
    )
    if not rows:
        exists = await conn.execute_fetchall("SELECT 1 FROM incidents WHERE id = ?", (incident_id,))
        if not exists:
            raise StoreError(f"no incident {incident_id}")


async def reopen_incident(conn: Any, incident_id: int) -> bool:
    """Open again an incident closed at a restart (the target is still down); False if there is none.

    Nothing to reopen when another incident of the target was opened meanwhile (another replica took
    the target over): that one is the open incident, and this one stays closed.
    """
    rows = await conn.execute_fetchall(
        "UPDATE incidents SET ended_at = NULL WHERE id = ? AND NOT EXISTS (SELECT 1 FROM incidents AS o"
        " WHERE o.target_id = incidents.target_id AND o.ended_at IS NULL AND o.id <> incidents.id)"
        " RETURNING id",
        (incident_id,),
    )
    if rows:
        return True
    exists = await conn.execute_fetchall("SELECT 1 FROM incidents WHERE id = ?", (incident_id,))
    return bool(exists)


async def open_incidents(reader: Any) -> list[Incident]:
    """Incidents still open (to resume after a restart), oldest first."""
    rows = await reader.execute_fetchall(_COLUMNS + " WHERE i.ended_at IS NULL ORDER BY i.started_at, i.id")
    return [_incident(row) for row in rows]


async def incidents_overlapping(
    reader: Any, since_ms: int, until_ms: int | None, target: str | None
) -> list[Incident]:
    """Incidents overlapping [since, until) (an open one overlaps all after its start), newest first."""
    sql = _COLUMNS + " WHERE (i.ended_at IS NULL OR i.ended_at > ?)"
    params: list[Any] = [since_ms]
    if until_ms is not None:
        sql += " AND i.started_at < ?"
        params.append(until_ms)
    if target is not None:
        sql += " AND t.name = ?"
        params.append(target)
    rows = await reader.execute_fetchall(sql + " ORDER BY i.started_at DESC, i.id DESC", params)
    return [_incident(row) for row in rows]


def _at(value: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=value)


def _incident(row: Sequence[Any]) -> Incident:
    incident_id, name, started, ended, reason, detail = row
    return Incident(
        id=incident_id,
        target=name,
        started_at=_at(started),
        ended_at=None if ended is None else _at(ended),
        reason=reason,
        detail=detail or "",
    )
