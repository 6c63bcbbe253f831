"""Writing a sync's dossier rows (one transaction per sync), and reading them back at start-up.

On SQLite one writer holds the file's write lock for the whole transaction. On PostgreSQL several
replicas may write the same tables, so a sync first takes a transaction-scoped advisory lock per source
it touches (sorted, `source_turns`): two writers of one source take turns instead of interleaving row
locks, which could deadlock (the upserts, then the missed and vanished updates, lock rows in different
orders) or let an older listing land after a newer one. Rows are also upserted in code order there.
Whatever the engine, an older listing never overwrites what a newer one wrote (`last_seen` guards the
upsert and the vanishing), so a replica that lost its turn cannot roll a dossier back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

from monitor.dossiers.rows import (
    CLOSED,
    COLUMNS,
    SyncWrite,
    TrackedDossier,
    Upsert,
    dossier_from_row,
    epoch,
    shared_moments,
)
from monitor.store.engine import POSTGRESQL, SQLITE
from monitor.store.sql import SqlStore

__all__ = ["copy_rows", "load_dossiers", "source_turns", "write_sync"]

_ON_CONFLICT = (
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
    # An older listing written after a newer one (another replica's) changes nothing.
    " WHERE dossiers.last_seen <= excluded.last_seen"
)
_UPSERT = {
    # One statement per row, run by executemany in C: the fastest way into SQLite.
    SQLITE: f"INSERT INTO dossiers ({COLUMNS}) VALUES ({', '.join('?' * 30)}){_ON_CONFLICT}",
    # COPY into a session's temporary table, then one statement: at 100,000 rows several times faster
    # than executemany (a pipelined round trip per row) or arrays through unnest (bench/README.md).
    POSTGRESQL: f"INSERT INTO dossiers ({COLUMNS}) SELECT {COLUMNS} FROM dossiers_stage ORDER BY code"
    + _ON_CONFLICT,
}
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS dossiers_stage (LIKE dossiers INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
# A transaction-scoped lock per source, named within the schema (as postgres.lock_key does).
_SOURCE_TURN = (
    "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':dossier-source:' || ?, 0))"
)
# Rows of parameters built at once: 100,000 at once would double the daemon's peak memory.
_CHUNK = 2000


async def load_dossiers(
    store: SqlStore, sources: Collection[str] | None = None
) -> tuple[dict[str, TrackedDossier], dict[str, int]]:
    """Tracked dossiers (open, paused, vanished) and the fingerprints of closed ones, by code; only
    those of `sources` when given."""
    tracked: dict[str, TrackedDossier] = {}
    closed: dict[str, int] = {}
    moment = shared_moments()
    sql, params = f"SELECT {COLUMNS} FROM dossiers", None
    if sources is not None:
        sql += f" WHERE source IN ({', '.join('?' * len(sources))})"
        params = list(sources)
    async with store.reader.execute(sql, params) as cursor:
        async for row in cursor:
            dossier = dossier_from_row(row, moment)
            status = row[2]
            if status in ("finished", "cancelled"):
                closed[dossier.code] = hash(dossier)
            else:
                tracked[dossier.code] = TrackedDossier(dossier, row[24], status == "vanished")
    return tracked, closed


async def source_turns(conn: Any, dialect: str, sources: Iterable[str]) -> None:
    """On PostgreSQL, wait for this transaction's turn at each source (sorted: no lock-order cycles)."""
    if dialect != POSTGRESQL:
        return
    for source in sorted(set(sources)):
        await conn.execute(_SOURCE_TURN, (source,))


async def write_sync(store: SqlStore, write: SyncWrite) -> None:
    """Apply one successful sync in a single transaction."""
    now = epoch(write.now) or 0
    dialect = store.dialect
    upserts = write.upserts
    async with store.transaction("sync") as conn:
        if dialect == POSTGRESQL:
            await source_turns(conn, dialect, write.sources)
            if upserts:
                # Once each (one statement may not update a row twice; the last listed wins), then
                # written in code order (the statement's ORDER BY), as every replica does.
                latest = {upsert.dossier.code: upsert for upsert in upserts}.values()
                await copy_rows(conn, _STAGE, "dossiers_stage", COLUMNS, _upsert_rows(latest, now))
                await conn.execute(_UPSERT[dialect])
        else:
            for start in range(0, len(upserts), _CHUNK):
                chunk = upserts[start : start + _CHUNK]
                await conn.executemany(_UPSERT[dialect], [_upsert_params(upsert, now) for upsert in chunk])
        if write.missed:
            await conn.executemany(
                "UPDATE dossiers SET missed_full_syncs = ? WHERE code = ? AND last_seen <= ?",
                [(missed, code, now) for code, missed in sorted(write.missed)],
            )
        if write.vanished:
            await conn.executemany(
                "UPDATE dossiers SET status = 'vanished' WHERE code = ? AND last_seen <= ?",
                [(code, now) for code in sorted(write.vanished)],
            )
        if write.full_source is not None:
            await conn.execute(
                "UPDATE dossiers SET last_seen = ? WHERE source = ? AND status IN ('open', 'paused')"
                " AND missed_full_syncs = 0 AND last_seen < ?",
                (now, write.full_source, now),
            )


async def copy_rows(conn: Any, stage: str, table: str, columns: str, rows: Iterable[Sequence[Any]]) -> None:
    """PostgreSQL: `rows` into the session's temporary `table` (made by `stage`, emptied at commit)."""
    raw = conn.raw
    await raw.execute(stage)
    async with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)


def _upsert_rows(upserts: Iterable[Upsert], now: int) -> Iterator[tuple[Any, ...]]:
    for upsert in upserts:
        yield _upsert_params(upsert, now)


def _upsert_params(upsert: Upsert, now: int) -> tuple[Any, ...]:
    d = upsert.dossier
    timeline = upsert.timeline
    finished = d.status in CLOSED
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
