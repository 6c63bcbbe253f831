"""The store's tables as the migrations (migrations.py) create them: one SQLite DDL script per step.

PostgreSQL runs the same scripts through `migrations.postgres_ddl` unless a migration gives its own.

Layout choices, because the probe history is the bulk of the file (see bench/store_growth.py):
- times are integers (ms for results and incidents, epoch seconds for rollup buckets), targets are ids;
- rollup tables are keyed time first, so the writer's upserts land on the last few pages of the b-tree
  instead of one page per target, and retention deletes from the front;
- rollups are packed: one row per target per hour of minutes and per day of hours (packed.py);
- `probe_results` only holds rows that say something (failures, degraded, changes, maintenance, samples).
"""

from __future__ import annotations

__all__ = [
    "ALERT_DELIVER_BY",
    "ALERT_KEYS_BYTE_ORDER",
    "ALERT_OUTBOX",
    "ALERT_OUTBOX_CLAIM_LEASE",
    "ALERT_ROUTING",
    "CORE",
    "DOSSIERS",
    "MONITOR_RUNS",
    "ONE_OPEN_INCIDENT",
    "POSTGRES_AT",
    "READABLE_VIEW",
    "REPLICA_MEMBERS",
    "SQLITE_AT",
]

CORE = """
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
"""

# For IT poking at the database with the sqlite3 shell or psql: one view, each engine's time formatting.
READABLE_VIEW = """
CREATE VIEW probe_results_readable AS
SELECT t.name AS target,
       {at} AS at,
       r.duration_us / 1e6 AS duration,
       r.health, r.success, r.degraded, r.in_maintenance, r.changed, r.reason, r.status_code
FROM probe_results AS r JOIN targets AS t ON t.id = r.target_id;
"""
SQLITE_AT = "strftime('%Y-%m-%dT%H:%M:%fZ', r.at / 1000.0, 'unixepoch')"
POSTGRES_AT = "to_timestamp(r.at / 1000.0)"

# The durable alert outbox (alerts/outbox.py). Times are ms since epoch; `channel` is the current channel of
# the plan (channels[channel_index]), NULL once the plan is used up. Partial indexes keep the hot path (due
# pending rows, in-flight rows) small however many sent rows accumulate.
ALERT_OUTBOX = """
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

DOSSIERS = """
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

ALERT_ROUTING = """
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

MONITOR_RUNS = """
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

ALERT_DELIVER_BY = """
-- When an alert is late (ms since epoch); NULL = at once (not_before). alerts/attempts.py moves an alert
-- to its next channel when the current one cannot deliver by then.
ALTER TABLE alert_outbox ADD COLUMN deliver_by INTEGER;

-- Exclusive, expiring leases shared by every process on this file (alerts/channels/store_lease.py): one
-- Zalo token refresh at a time across the daemon and `notify-test`.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL           -- ms since epoch; a crashed holder's lease lapses then
) WITHOUT ROWID;
"""

# Several processes on one database (replicas): the database, not one process's memory, keeps one open
# incident per target (monitor/store/incidents.py), and the live rollup copies carry the run that wrote
# them (monitor/store/live.py).
ONE_OPEN_INCIDENT = """
-- Stores written before this had at most one open incident per target by the daemon's own bookkeeping;
-- should one hold two, the oldest stays open and covers the later one's time (downtime is their union),
-- which ends where it started.
UPDATE incidents SET ended_at = started_at WHERE ended_at IS NULL
    AND EXISTS (SELECT 1 FROM incidents AS o WHERE o.target_id = incidents.target_id AND o.ended_at IS NULL
        AND (o.started_at < incidents.started_at
             OR (o.started_at = incidents.started_at AND o.id < incidents.id)));
DROP INDEX incidents_open;
CREATE UNIQUE INDEX incidents_open_one ON incidents (target_id) WHERE ended_at IS NULL;

-- A copy of memory, rewritten every heartbeat: dropped, not converted.
DROP TABLE rollup_live;
CREATE TABLE rollup_live (
    run_id INTEGER NOT NULL,              -- the monitor_runs row (process) whose memory this copies
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
    PRIMARY KEY (run_id, size, bucket, target_id)
) WITHOUT ROWID;
"""

ALERT_OUTBOX_CLAIM_LEASE = """
-- Who holds (or last held) a row's claim and until when (ms since epoch): replicas sharing one database
-- claim rows with a lease (alerts/outbox.py); an in_flight row whose holder died comes back to pending
-- once it lapses. No index of its own: in_flight rows are few (alert_outbox_in_flight finds them).
ALTER TABLE alert_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE alert_outbox ADD COLUMN claim_expires_at INTEGER;
"""

# PostgreSQL compares text in the database's collation, which may ignore punctuation: the range of keys
# of one crossing (`crossing:<id>:` to `crossing:<id>;`, alerts/recorded.py) is read in byte order, from
# these indexes. (SQLite compares bytes already.)
ALERT_KEYS_BYTE_ORDER = """
CREATE INDEX alert_outbox_key_bytes ON alert_outbox ((dedupe_key COLLATE "C"));
CREATE INDEX alert_digest_items_key_bytes ON alert_digest_items ((dedupe_key COLLATE "C"));
"""

REPLICA_MEMBERS = """
-- The daemons sharing this store (monitor/replicas/membership.py). A row per process start; times are ms
-- since epoch of the database's clock on PostgreSQL. A member is live while last_seen_at + lease_ms is
-- ahead of now; left_at is set by a clean stop, so the others take its share at once.
CREATE TABLE replica_members (
    id TEXT PRIMARY KEY,                  -- host-pid-random (or replicas.name), fresh at every start
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    lease_ms INTEGER NOT NULL,
    left_at INTEGER
) WITHOUT ROWID;
CREATE INDEX replica_members_seen ON replica_members (last_seen_at);

-- Each target's live state as its owner last published it (monitor/replicas/target_states.py), so the API
-- of every member answers the same. `state` is JSON; updated_at is ms since epoch.
CREATE TABLE replica_target_states (
    target TEXT PRIMARY KEY,
    member TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"""
