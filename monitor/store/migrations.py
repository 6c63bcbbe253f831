"""Schema migrations of the SQLite store: an ordered list, each applied once in its own transaction.

To add tables (dossiers, alert outbox), append a `Migration` with the next version number; never edit
or reorder one that has shipped. A step is an SQL script (no BEGIN/COMMIT inside) or an async callable
taking the connection (use `execute`, not `executescript`, so it stays inside the transaction).

Layout choices, because the probe history is the bulk of the file (see bench/store_growth.py):
- times are integers (ms for results and incidents, epoch seconds for rollup buckets), targets are ids;
- rollup tables are keyed time first, so the writer's upserts land on the last few pages of the b-tree
  instead of one page per target, and retention deletes from the front;
- rollups are packed: one row per target per hour of minutes and per day of hours (packed.py);
- `probe_results` only holds rows that say something (failures, degraded, changes, maintenance, samples).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiosqlite

from monitor.store.base import StoreError

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "apply_migrations", "schema_version"]

MigrationStep = str | Callable[[aiosqlite.Connection], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change; `version` numbers start at 1 and increase by one."""

    version: int
    description: str
    step: MigrationStep


_CORE = """
CREATE TABLE targets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL,          -- ms since epoch of the first stored result or incident
    health INTEGER                        -- last stored health code (see sqlite.py HEALTH_CODES)
);

CREATE TABLE probe_results (
    target_id INTEGER NOT NULL,
    at INTEGER NOT NULL,                  -- ms since epoch
    duration_us INTEGER NOT NULL,
    health INTEGER NOT NULL,
    success INTEGER NOT NULL,
    degraded INTEGER NOT NULL,
    in_maintenance INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    reason INTEGER,                       -- short code (see sqlite.py REASON_CODES)
    status_code INTEGER,
    PRIMARY KEY (target_id, at)
) WITHOUT ROWID;

CREATE TABLE rollup_minute (
    bucket INTEGER NOT NULL,              -- epoch seconds of the hour this row packs
    target_id INTEGER NOT NULL,
    minutes BLOB NOT NULL,                -- the hour's non-empty minutes (monitor/store/packed.py)
    PRIMARY KEY (bucket, target_id)
) WITHOUT ROWID;

-- A rowid table: a packed day can pass the ~1 KB a WITHOUT ROWID row keeps on its page.
CREATE TABLE rollup_hour (
    bucket INTEGER NOT NULL,              -- epoch seconds of the UTC day this row packs
    target_id INTEGER NOT NULL,
    probes INTEGER NOT NULL,              -- day totals, so whole days add up in SQL
    failures INTEGER NOT NULL,            -- outside maintenance
    degraded INTEGER NOT NULL,            -- outside maintenance
    maintenance INTEGER NOT NULL,
    latency_max_us INTEGER NOT NULL,      -- rounded up to a 4.4 % level (packed.ceil_latency)
    hours BLOB NOT NULL,                  -- day histogram and the non-empty hours (packed.py)
    PRIMARY KEY (bucket, target_id)
);
-- One target over months of days without scanning every target.
CREATE INDEX rollup_hour_target ON rollup_hour (target_id, bucket);

-- Closed minutes (size 60) and hours (size 3600) of packed rows still open, unpacked: a packed row is
-- written once, when its hour or day closes, so it never grows in place (growing rows fragment pages).
CREATE TABLE rollup_open (
    size INTEGER NOT NULL,                -- 60 or 3600 seconds
    bucket INTEGER NOT NULL,              -- epoch seconds of the minute or hour
    target_id INTEGER NOT NULL,
    probes INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    degraded INTEGER NOT NULL,
    maintenance INTEGER NOT NULL,
    latency_sum_us INTEGER NOT NULL,
    latency_max_us INTEGER NOT NULL,
    histogram BLOB NOT NULL,              -- monitor/store/latency.py encoding; empty for minutes
    PRIMARY KEY (size, bucket, target_id)
) WITHOUT ROWID;

CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    target_id INTEGER NOT NULL REFERENCES targets (id),
    started_at INTEGER NOT NULL,          -- ms since epoch
    ended_at INTEGER,                     -- NULL while open
    reason TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX incidents_started ON incidents (started_at);
CREATE INDEX incidents_target ON incidents (target_id, started_at);
CREATE INDEX incidents_open ON incidents (target_id) WHERE ended_at IS NULL;

CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- For IT poking at the file with the sqlite3 shell.
CREATE VIEW probe_results_readable AS
SELECT t.name AS target,
       strftime('%Y-%m-%dT%H:%M:%fZ', r.at / 1000.0, 'unixepoch') AS at,
       r.duration_us / 1e6 AS duration,
       r.health, r.success, r.degraded, r.in_maintenance, r.changed, r.reason, r.status_code
FROM probe_results AS r JOIN targets AS t ON t.id = r.target_id;
"""

# The durable alert outbox (alerts/outbox.py). Times are ms since epoch; `channel` is the current channel of
# the plan (channels[channel_index]), NULL once the plan is used up. Partial indexes keep the hot path (due
# pending rows, in-flight rows) small however many sent rows accumulate.
_ALERT_OUTBOX = """
CREATE TABLE alert_outbox (
    id INTEGER PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    person_id TEXT NOT NULL,
    channels TEXT NOT NULL,               -- JSON list of channel names, in fallback order
    channel_index INTEGER NOT NULL DEFAULT 0,
    channel TEXT,                         -- channels[channel_index], NULL when none is left
    text TEXT NOT NULL,
    template_params TEXT NOT NULL DEFAULT '{}',
    phone TEXT,
    zalo_user_id TEXT,
    subject TEXT NOT NULL DEFAULT '',
    keep TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,                 -- pending, in_flight, sent, failed
    attempts INTEGER NOT NULL DEFAULT 0,
    channel_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    event_at INTEGER NOT NULL,
    not_before INTEGER NOT NULL,
    sent_at INTEGER,
    channel_used TEXT,
    provider_message_id TEXT,
    segments INTEGER,
    last_error TEXT,
    duplicate_hint INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX alert_outbox_channel_due ON alert_outbox (channel, next_attempt_at) WHERE status = 'pending';
CREATE INDEX alert_outbox_in_flight ON alert_outbox (id) WHERE status = 'in_flight';
CREATE INDEX alert_outbox_created ON alert_outbox (created_at);
"""

_DOSSIERS = """
-- Dossiers as last synced (monitor/dossier_store.py). No applicant data: the sources never map it.
CREATE TABLE dossiers (
    code TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    status TEXT NOT NULL,                 -- open, paused, finished, cancelled, vanished
    source_status TEXT NOT NULL,          -- the source's normalized status (kept while vanished)
    raw_status TEXT NOT NULL DEFAULT '',
    unit_code TEXT NOT NULL,
    unit_name TEXT NOT NULL DEFAULT '',
    procedure_code TEXT NOT NULL DEFAULT '',
    procedure_name TEXT NOT NULL DEFAULT '',
    assignee_id TEXT NOT NULL DEFAULT '',
    assignee_name TEXT NOT NULL DEFAULT '',
    received_at INTEGER,                  -- epoch seconds, like every time in these tables
    due_at INTEGER,
    extended_due_at INTEGER,
    duration_days REAL,
    duration_hours REAL,
    released_at INTEGER,
    finished_at INTEGER,
    modified_at INTEGER,
    via_postal INTEGER NOT NULL DEFAULT 0,
    online INTEGER,
    -- The deadline state is a function of now: these instants make it one CASE in SQL (API, CLI).
    deadline_at INTEGER,                  -- the effective due time (extension or computed one included)
    soon_at INTEGER,                      -- working time left reaches the largest threshold
    due_day_at INTEGER,                   -- local midnight of the due date
    missed_full_syncs INTEGER NOT NULL DEFAULT 0,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    returned_at INTEGER,
    timeliness TEXT,                      -- early, on_time, late; none when cancelled or undated
    finished_seen_at INTEGER,
    overdue_outage INTEGER,               -- 1/0 once overdue: a dossier-system incident overlapped
    outage_incident_ids TEXT NOT NULL DEFAULT ''
);
CREATE INDEX dossiers_status ON dossiers (status, code);
CREATE INDEX dossiers_unit ON dossiers (unit_code, status, code);
CREATE INDEX dossiers_source ON dossiers (source, status);
CREATE INDEX dossiers_returned ON dossiers (returned_at) WHERE returned_at IS NOT NULL;

CREATE TABLE dossier_crossings (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    threshold TEXT NOT NULL,              -- the configured key (2d, 4h) or overdue
    due_at INTEGER NOT NULL,
    crossed_at INTEGER NOT NULL,
    working_seconds_left INTEGER NOT NULL,
    outage_overlap INTEGER,
    outage_incident_ids TEXT NOT NULL DEFAULT '',
    -- A shallower threshold skipped because the dossier was first seen past a deeper one: never published.
    suppressed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (code, threshold, due_at)
);
CREATE INDEX dossier_crossings_time ON dossier_crossings (crossed_at);
"""

_ALERT_ROUTING = """
-- Due-soon alerts waiting for a person's morning digest (alerts/digest.py). Times are epoch seconds.
CREATE TABLE alert_digest_items (
    dedupe_key TEXT PRIMARY KEY,          -- the alert the digest replaces: crossing:<id>:<person>
    person_id TEXT NOT NULL,
    code TEXT NOT NULL,                   -- dossier code (never applicant data)
    due_at INTEGER NOT NULL,
    event_at INTEGER NOT NULL,
    channels TEXT NOT NULL,               -- JSON list, fallback order
    digest_key TEXT,                      -- digest:<person>:<date> once assigned to a digest
    enqueued INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX alert_digest_items_person ON alert_digest_items (person_id, digest_key);

-- "Longer than" timers (DEGRADED, sync failing) and later certificate warnings (alerts/router.py).
CREATE TABLE alert_timers (
    key TEXT PRIMARY KEY,                 -- <kind>:<target or source>:<rule>
    kind TEXT NOT NULL,
    name TEXT NOT NULL,                   -- target or dossier source
    rule TEXT NOT NULL,
    since INTEGER NOT NULL,
    fire_at INTEGER NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE INDEX alert_timers_fire ON alert_timers (fire_at);
"""

_MONITOR_RUNS = """
-- When the daemon was running (monitor/store/monitored.py): uptime counts only this time. Times are
-- epoch ms; last_seen_at moves forward every heartbeat; stopped_at is NULL while running or after a crash.
CREATE TABLE monitor_runs (
    id INTEGER PRIMARY KEY,
    started_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    stopped_at INTEGER,
    heartbeat_ms INTEGER NOT NULL         -- the run's heartbeat interval: how stale last_seen_at may get
);
CREATE INDEX monitor_runs_started ON monitor_runs (started_at);

-- The daemon's open (in-memory) minute and hour rollups as of its last heartbeat (monitor/store/live.py),
-- so another process (the CLI) reads the same counts and latencies as the daemon's API.
CREATE TABLE rollup_live (
    size INTEGER NOT NULL,                -- 60 or 3600
    bucket INTEGER NOT NULL,              -- epoch seconds
    target_id INTEGER NOT NULL,
    probes INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    degraded INTEGER NOT NULL,
    maintenance INTEGER NOT NULL,
    latency_sum_us INTEGER NOT NULL,
    latency_max_us INTEGER NOT NULL,
    histogram BLOB NOT NULL,
    PRIMARY KEY (size, bucket, target_id)
) WITHOUT ROWID;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "targets, probe results, rollups, incidents, kv", _CORE),
    Migration(2, "dossiers", _DOSSIERS),
    Migration(3, "alert outbox", _ALERT_OUTBOX),
    Migration(4, "alert routing state", _ALERT_ROUTING),
    Migration(5, "daemon runs (heartbeat) and live rollups", _MONITOR_RUNS),
)

LATEST_VERSION = MIGRATIONS[-1].version

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)
"""


async def schema_version(conn: aiosqlite.Connection) -> int | None:
    """The highest applied version, or None when the file has no schema_version table."""
    rows = await conn.execute_fetchall(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    )
    if not rows:
        return None
    rows = await conn.execute_fetchall("SELECT max(version) FROM schema_version")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _check_order(migrations: Sequence[Migration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise StoreError(
                f"migration versions must be 1, 2, 3...; found {migration.version} at {expected}"
            )


async def apply_migrations(
    conn: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Apply every migration not yet recorded, each in one transaction; return the versions applied.

    The connection must be in autocommit mode (isolation_level=None). Safe against a second process
    migrating at the same time: the version is re-read under the write lock.
    """
    _check_order(migrations)
    await conn.execute(_VERSION_TABLE)
    applied: list[int] = []
    latest = migrations[-1].version if migrations else 0
    for migration in migrations:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            current = await schema_version(conn) or 0
            if current > latest:
                raise StoreError(f"store schema version {current} is newer than this program ({latest})")
            if current >= migration.version:
                await conn.execute("ROLLBACK")
                continue
            if isinstance(migration.step, str):
                await _run_script(conn, migration.step)
            else:
                await migration.step(conn)
            await conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, int(time.time())),
            )
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    if not migrations:
        return applied
    current = await schema_version(conn) or 0
    if current > latest:
        raise StoreError(f"store schema version {current} is newer than this program ({latest})")
    return applied


async def _run_script(conn: aiosqlite.Connection, script: str) -> None:
    # executescript would commit the open transaction first, so run the statements one by one.
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            if statement.strip():
                await conn.execute(statement)
            statement = ""
    if statement.strip() and not statement.strip().startswith("--"):
        await conn.execute(statement)
