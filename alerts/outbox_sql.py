"""The outbox's SQL, both engines side by side: claims, releases and a delivery round's changes.

alerts/outbox.py runs them. Where SQLite and PostgreSQL differ (JSON of the channel plan, scalar
min/max, row locks for claims shared by replicas) both statements are here, small, picked by dialect.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from alerts.outbox_rows import OutboxRow, PreparedChanges, row_from_values
from monitor.store.engine import POSTGRESQL, SQLITE

__all__ = [
    "COLUMNS",
    "INSERT",
    "ClaimFilter",
    "apply_changes",
    "claim_statement",
    "claimed_rows",
    "lease_end",
    "release_statement",
]

COLUMNS = (
    "id, dedupe_key, kind, severity, person_id, channels, channel_index, channel, text, template_params,"
    " phone, zalo_user_id, subject, keep, status, attempts, channel_attempts, next_attempt_at, created_at,"
    " event_at, not_before, sent_at, channel_used, provider_message_id, segments, last_error, duplicate_hint,"
    " deliver_by"
)
INSERT = (
    "INSERT INTO alert_outbox (dedupe_key, kind, severity, person_id, channels, channel_index,"
    " channel, text, template_params, phone, zalo_user_id, subject, keep, status, attempts, next_attempt_at,"
    " created_at, event_at, not_before, deliver_by)"
    " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# The clock claim leases are measured on. Replicas on PostgreSQL use the database's (the time this
# statement started, in ms since epoch): a replica whose own clock runs ahead would otherwise take live
# claims back as lapsed, and one running behind would set leases that lapse early, so every replica would
# need NTP well within the lease. SQLite's one process keeps its own clock, computed in Python as before:
# nothing more to evaluate on the embedded hot path.
_DATABASE_NOW_MS = "(extract(epoch from statement_timestamp()) * 1000)::bigint"
_LEASE_END = {SQLITE: "?", POSTGRESQL: f"{_DATABASE_NOW_MS} + ?"}


def lease_end(dialect: str, now_ms: int, lease_ms: int) -> tuple[str, int]:
    """SQL for the end of a claim lease taken now, and its one parameter: on SQLite the end itself (by
    the local clock `now_ms`), on PostgreSQL the lease's length, added to the database's clock."""
    return _LEASE_END[dialect], now_ms + lease_ms if dialect == SQLITE else lease_ms


# In-flight rows going back to pending, due now (?1 now): on SQLite every one (one daemon per file, at
# its start); on PostgreSQL those whose claim lease lapsed by the database's clock, and those of claimer
# ?2 (NULL: none).
_RELEASE = {
    SQLITE: (
        "UPDATE alert_outbox SET status = 'pending', next_attempt_at = min(next_attempt_at, ?1),"
        " claimed_by = NULL, claim_expires_at = NULL,"
        " last_error = coalesce(last_error, 'interrupted: resent after restart') WHERE status = 'in_flight'"
    ),
    POSTGRESQL: (
        "UPDATE alert_outbox SET status = 'pending', next_attempt_at = LEAST(next_attempt_at, ?1),"
        " claimed_by = NULL, claim_expires_at = NULL,"
        " last_error = coalesce(last_error, 'interrupted: resent after its claim lapsed')"
        " WHERE status = 'in_flight' AND (claim_expires_at IS NULL"
        f" OR claim_expires_at <= {_DATABASE_NOW_MS}"
        " OR claimed_by = ?2)"
    ),
}

# A rescheduled row moves to the next channel of its plan (?3 = 1): the plan's next name, NULL past its
# end ("no channel left"). Only a row still ours (?5, or nobody's) moves: one another replica took over
# after our lease lapsed is theirs now.
_RESCHEDULE = (
    "UPDATE alert_outbox SET status = 'pending', next_attempt_at = ?1, last_error = ?2,"
    " channel = CASE WHEN ?3 = 1 THEN {next_channel} ELSE channel END, channel_index = channel_index + ?3,"
    " channel_attempts = CASE WHEN ?3 = 1 THEN 0 ELSE channel_attempts END,"
    " claimed_by = NULL, claim_expires_at = NULL WHERE id = ?4 AND (claimed_by IS NULL OR claimed_by = ?5)"
)
_RESCHEDULE_SQL = {
    SQLITE: _RESCHEDULE.format(next_channel="json_extract(channels, '$[' || (channel_index + 1) || ']')"),
    POSTGRESQL: _RESCHEDULE.format(next_channel="(channels::jsonb ->> (channel_index + 1)::integer)"),
}
_FAIL = (
    "UPDATE alert_outbox SET status = 'failed', last_error = coalesce(?, last_error), claimed_by = NULL,"
    " claim_expires_at = NULL WHERE id = ? AND (claimed_by IS NULL OR claimed_by = ?)"
)
# Rows with a further channel in their plan.
_HAS_FALLBACK = {
    SQLITE: " AND json_array_length(channels) > channel_index + 1",
    POSTGRESQL: " AND jsonb_array_length(channels::jsonb) > channel_index + 1",
}
# On PostgreSQL claimed rows are locked as they are chosen, skipping those another replica's claim is
# locking right now: two replicas claiming at once take different rows and neither waits.
_CLAIM_LOCK = {SQLITE: "", POSTGRESQL: " FOR UPDATE SKIP LOCKED"}


def release_statement(dialect: str, now_ms: int, claimer: str | None) -> tuple[str, tuple[Any, ...]]:
    """`Outbox.release_expired`'s statement and parameters (`claimer`: whose claims go back too)."""
    return _RELEASE[dialect], (now_ms,) if dialect == SQLITE else (now_ms, claimer)


@dataclass(frozen=True, slots=True)
class ClaimFilter:
    """Which due pending rows a claim takes (see `Outbox.claim`)."""

    channel: str | None = None
    other_than: Collection[str] | None = None
    fallback_only: bool = False
    waiting_too: bool = False


def claim_statement(
    dialect: str, lease: tuple[str, int], at: int, limit: int, which: ClaimFilter
) -> tuple[str, list[Any]]:
    """`Outbox.claim`'s statement and parameters; `lease` is (claimer, lease length in ms), `at` the
    claimer's now in ms (which rows are due; on SQLite also where the lease starts)."""
    claimer, lease_ms = lease
    expires, expires_param = lease_end(dialect, at, lease_ms)
    where = "status = 'pending' AND not_before <= ?"
    params: list[Any] = [claimer, expires_param, at]
    if not which.waiting_too:
        where += " AND next_attempt_at <= ?"
        params.append(at)
    if which.channel is not None:
        where += " AND channel = ?"
        params.append(which.channel)
    if which.other_than is not None:
        names = sorted(which.other_than)
        marks = ", ".join("?" * len(names))
        where += f" AND (channel IS NULL OR channel NOT IN ({marks}))" if names else ""
        params.extend(names)
    if which.fallback_only:
        where += _HAS_FALLBACK[dialect]
    params.append(limit)
    return (
        "UPDATE alert_outbox SET status = 'in_flight', attempts = attempts + 1,"
        f" channel_attempts = channel_attempts + 1, claimed_by = ?, claim_expires_at = {expires}"
        f" WHERE id IN (SELECT id FROM alert_outbox WHERE {where} ORDER BY next_attempt_at, id"
        f" LIMIT ?{_CLAIM_LOCK[dialect]}) RETURNING {COLUMNS}",
        params,
    )


async def claimed_rows(conn: Any, query: tuple[str, list[Any]]) -> list[OutboxRow]:
    """Run a claim; the rows it took, due first."""
    rows = await conn.execute_fetchall(*query)
    claimed = [row_from_values(values) for values in rows]
    claimed.sort(key=lambda row: (row.next_attempt_at, row.id))
    return claimed


async def apply_changes(conn: Any, prepared: PreparedChanges, dialect: str, claimer: str) -> None:
    """A delivery round's outcomes (sent, rescheduled, failed) on the rows `claimer` holds."""
    sent, moved, failed = prepared
    if sent:
        # A send that happened is recorded whoever holds the row now; claimed_by keeps who sent it.
        await conn.executemany(
            "UPDATE alert_outbox SET status = 'sent', sent_at = ?, channel_used = ?,"
            " provider_message_id = ?, segments = ?, duplicate_hint = ? WHERE id = ?",
            sent,
        )
    if moved:
        await conn.executemany(_RESCHEDULE_SQL[dialect], [(*change, claimer) for change in moved])
    if failed:
        await conn.executemany(_FAIL, [(*change, claimer) for change in failed])
