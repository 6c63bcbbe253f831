"""The store on both engines (a real SQLite file, a real PostgreSQL schema): migrations, compact rows,
rollups, uptime, retention, KV, read-only readers; the file lock is SQLite's own."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.store import Incident, ProbeResult, SqliteStore, Store, StoreError, latency, packed
from monitor.store.config import StoreConfig
from monitor.store.engine import DB_ERRORS
from monitor.store.migrations import MIGRATIONS, Migration
from monitor.store.open import store_from_config
from monitor.store.sql import REASON_CODES, SqlStore
from tests.store_engines import StoreFactory

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
# Other modules add their own migrations; test ones go after whatever ships.
NEXT = MIGRATIONS[-1].version + 1
OK = ProbeOutcome(success=True)
SLOW = ProbeOutcome(success=True, degraded=True, reason=FailureReason.SLOW)
TIMEOUT = ProbeOutcome(success=False, reason=FailureReason.TIMEOUT, detail="timed out")


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def result(
    target: str,
    at: datetime,
    outcome: ProbeOutcome = OK,
    duration: float = 0.05,
    health: Health = Health.UP,
    *,
    in_maintenance: bool = False,
    changed: bool = False,
) -> ProbeResult:
    return ProbeResult(target, at, duration, outcome, health, in_maintenance, changed)


def make_store(stores: StoreFactory, path: Path, clock: Clock, **kwargs: object) -> SqlStore:
    return stores.new(path, clock=clock, **kwargs)


async def raw_rows(store: SqliteStore, target: str | None = None) -> list[tuple]:
    sql = (
        "SELECT t.name, r.at, r.success, r.degraded, r.in_maintenance, r.changed, r.health, r.reason"
        " FROM probe_results r JOIN targets t ON t.id = r.target_id"
    )
    if target is not None:
        return list(await store.reader.execute_fetchall(sql + " WHERE t.name = ? ORDER BY r.at", (target,)))
    return list(await store.reader.execute_fetchall(sql + " ORDER BY r.at"))


async def count(store: SqliteStore, table: str) -> int:
    rows = await store.reader.execute_fetchall(f"SELECT count(*) FROM {table}")
    return int(rows[0][0])


async def eventually(read: Callable[[], Awaitable[object]], expected: object, seconds: float = 5.0) -> None:
    """Poll until `read()` returns `expected`: background work has no completion event to wait on."""
    for _ in range(int(seconds / 0.01)):
        if await read() == expected:
            return
        await asyncio.sleep(0.01)
    assert await read() == expected


@asynccontextmanager
async def traced(store: SqlStore, statements: list[str]) -> AsyncIterator[None]:
    """Every statement the writer runs meanwhile: SQLite's trace callback, or PostgreSQL's wrapper's
    `execute` seen from outside (psycopg has no statement trace)."""
    conn = store.connection
    if not stores_postgres(store):
        await conn.set_trace_callback(statements.append)
        try:
            yield
        finally:
            await conn.set_trace_callback(None)
        return
    real = conn.execute

    def execute(sql: str, params: object = None) -> object:
        statements.append(sql)
        return real(sql, params)

    conn.execute = execute
    try:
        yield
    finally:
        del conn.execute


def stores_postgres(store: SqlStore) -> bool:
    return store.dialect == "postgresql"


def nearest_rank(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(quantile * len(ordered))) - 1]


# --- migrations -----------------------------------------------------------------------------------------


async def test_migrations_apply_once_and_are_recorded(stores: StoreFactory, tmp_path: Path) -> None:
    """A new file gets every migration once; reopening applies nothing and keeps one row per version."""
    path = tmp_path / "nested" / "dir" / "store.db"
    clock = Clock(T0)
    async with make_store(stores, path, clock) as store:
        rows = await store.reader.execute_fetchall("SELECT version FROM schema_version")
        assert [row[0] for row in rows] == [m.version for m in MIGRATIONS]
        if not stores.postgres:
            mode = await store.reader.execute_fetchall("PRAGMA journal_mode")
            assert mode[0][0] == "wal"
    async with make_store(stores, path, clock) as store:
        rows = await store.reader.execute_fetchall("SELECT version FROM schema_version")
        assert [row[0] for row in rows] == [m.version for m in MIGRATIONS]


async def test_later_migrations_apply_only_the_new_steps(stores: StoreFactory, tmp_path: Path) -> None:
    """A new migration (script or callable) runs once on an existing file; a failing one leaves no trace."""
    path = tmp_path / "store.db"
    clock = Clock(T0)
    async with make_store(stores, path, clock):
        pass

    async def seed(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO test_outbox (body) VALUES ('first')")

    extended = (
        *MIGRATIONS,
        Migration(NEXT, "outbox", "CREATE TABLE test_outbox (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"),
        Migration(NEXT + 1, "seed outbox", seed),
    )
    async with make_store(stores, path, clock, migrations=extended) as store:
        rows = await store.reader.execute_fetchall("SELECT body FROM test_outbox")
        assert [row[0] for row in rows] == ["first"]
    async with make_store(stores, path, clock, migrations=extended) as store:
        rows = await store.reader.execute_fetchall("SELECT body FROM test_outbox")
        assert [row[0] for row in rows] == ["first"], "the callable ran twice"

    broken = (
        *extended,
        Migration(NEXT + 2, "broken", "CREATE TABLE half (x INTEGER);\nINSERT INTO missing VALUES (1);"),
    )
    with pytest.raises(DB_ERRORS):
        await make_store(stores, path, clock, migrations=broken).open()
    conn = stores.connect(path)
    try:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == NEXT + 1
    finally:
        conn.close()
    assert not stores.has_table(path, "half")
    assert stores.has_table(path, "test_outbox")


async def test_newer_or_missing_schema_is_refused(stores: StoreFactory, tmp_path: Path) -> None:
    """A file from a newer program, or one without a schema, fails with a clear message."""
    path = tmp_path / "store.db"
    clock = Clock(T0)
    async with make_store(stores, path, clock):
        pass
    conn = stores.connect(path)
    try:
        conn.execute("INSERT INTO schema_version VALUES (99, 'future', 0)")
    finally:
        conn.close()
    with pytest.raises(StoreError, match="newer than this program"):
        await make_store(stores, path, clock).open()
    with pytest.raises(StoreError, match="newer than this program"):
        await stores.open_readonly(path)

    empty = tmp_path / "empty.db"
    stores.connect(empty).close()
    if stores.postgres:
        stores.connect(empty).execute(f"CREATE SCHEMA {stores.schema(empty)}").connection.close()
    with pytest.raises(StoreError, match="no store schema"):
        await stores.open_readonly(empty)
    if stores.postgres:
        return
    # What only a file can be: missing, or not a database at all.
    with pytest.raises(StoreError, match="no store at"):
        await SqliteStore.open_readonly(tmp_path / "absent.db")
    garbage = tmp_path / "notes #1?.db"
    garbage.write_bytes(b"not a database at all, just text" * 10)
    with pytest.raises(StoreError, match="is not a tthc-monitor store"):
        await SqliteStore.open_readonly(garbage)


# --- raw rows and persistence ---------------------------------------------------------------------------


async def test_successes_are_sampled_and_everything_else_is_a_row(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """1,000 quiet successes leave a row per sample interval; failures, changes, degraded, maintenance do."""
    clock = Clock(T0 + timedelta(days=1))
    async with make_store(stores, tmp_path / "store.db", clock) as store:
        for i in range(1000):
            store.record(result("portal", T0 + timedelta(seconds=10 * i)))
        await store.flush()
        rows = await raw_rows(store, "portal")
        # 10 s probes, one sample per 5 minutes: results 0, 30, 60, ... 990.
        assert [row[1] for row in rows] == [
            int((T0 + timedelta(seconds=10 * i)).timestamp() * 1000) for i in range(0, 1000, 30)
        ]

        later = T0 + timedelta(seconds=10_000)
        store.record(result("portal", later, TIMEOUT, 10.0, Health.UP))
        store.record(
            result("portal", later + timedelta(seconds=10), TIMEOUT, 10.0, Health.DOWN, changed=True)
        )
        store.record(result("portal", later + timedelta(seconds=20), OK, 0.04, Health.UP, changed=True))
        store.record(
            result("portal", later + timedelta(seconds=30), SLOW, 3.0, Health.DEGRADED, changed=True)
        )
        store.record(result("portal", later + timedelta(seconds=40), OK, 0.04, Health.UP, changed=True))
        store.record(
            result("portal", later + timedelta(seconds=50), OK, 0.04, Health.UP, in_maintenance=True)
        )
        store.record(result("portal", later + timedelta(seconds=60), OK, 0.04, Health.UP))
        await store.flush()
        tail = (await raw_rows(store, "portal"))[-6:]
        timeout_code = REASON_CODES[FailureReason.TIMEOUT]
        assert [row[2:] for row in tail] == [
            (0, 0, 0, 0, 1, timeout_code),
            (0, 0, 0, 1, 3, timeout_code),
            (1, 0, 0, 1, 1, None),
            (1, 1, 0, 1, 2, REASON_CODES[FailureReason.SLOW]),
            (1, 0, 0, 1, 1, None),
            (1, 0, 1, 0, 1, None),
        ]
        assert await count(store, "probe_results") == 34 + 6
        assert await count(store, "targets") == 1


async def test_reopen_keeps_results_incidents_and_health(stores: StoreFactory, tmp_path: Path) -> None:
    """Closing flushes the buffer; a new store on the same file resumes health and open incidents."""
    path = tmp_path / "store.db"
    clock = Clock(T0 + timedelta(hours=1))
    store = make_store(stores, path, clock, flush_interval=3600)
    await store.open()
    store.record(result("portal", T0, TIMEOUT, 10.0, Health.DOWN, changed=True))
    store.record(result("db", T0, OK, 0.01, Health.UP, changed=True))
    incident_id = await store.open_incident("portal", T0, "timeout", "timed out")
    assert store.pending_writes == 2
    await store.close()

    async with make_store(stores, path, clock) as store:
        assert await store.latest_health() == {"portal": Health.DOWN, "db": Health.UP}
        assert await store.open_incidents() == [
            Incident(incident_id, "portal", T0, None, "timeout", "timed out")
        ]
        assert len(await raw_rows(store)) == 2
        await store.close_incident(incident_id, T0 + timedelta(minutes=7))
        await store.close_incident(incident_id, T0 + timedelta(minutes=9))  # already closed: no change
        with pytest.raises(StoreError, match="no incident"):
            await store.close_incident(incident_id + 100, T0)
    async with make_store(stores, path, clock) as store:
        assert await store.open_incidents() == []
        [closed] = await store.incidents(T0)
        assert closed.ended_at == T0 + timedelta(minutes=7)
        assert closed.duration_seconds(clock()) == 420


async def test_incident_queries_filter_overlap_and_order(stores: StoreFactory, tmp_path: Path) -> None:
    """incidents() returns those overlapping the range, newest first, optionally for one target."""
    clock = Clock(T0 + timedelta(hours=10))
    async with make_store(stores, tmp_path / "store.db", clock) as store:
        first = await store.open_incident("portal", T0, "timeout", "")
        await store.close_incident(first, T0 + timedelta(hours=1))
        second = await store.open_incident("db", T0 + timedelta(hours=2), "refused", "port closed")
        await store.close_incident(second, T0 + timedelta(hours=3))
        third = await store.open_incident("portal", T0 + timedelta(hours=5), None, "")

        ids = [i.id for i in await store.incidents(T0 - timedelta(days=1))]
        assert ids == [third, second, first]
        ids = [
            i.id
            for i in await store.incidents(T0 + timedelta(minutes=30), T0 + timedelta(hours=2, minutes=1))
        ]
        assert ids == [second, first]
        # Ends exactly when the range starts: no overlap.
        ids = [i.id for i in await store.incidents(T0 + timedelta(hours=1), T0 + timedelta(hours=2))]
        assert ids == []
        ids = [i.id for i in await store.incidents(T0 + timedelta(hours=9), target="portal")]
        assert ids == [third]
        [still_open] = await store.open_incidents()
        assert still_open.duration_seconds(clock()) == 5 * 3600


# --- rollups and uptime ---------------------------------------------------------------------------------


def known_series() -> tuple[list[ProbeResult], list[float]]:
    """Three hours of 10 s probes of `portal` with an outage 00:58:30-01:03:20 and one from 02:50 on.

    Besides the outages: a timeout on every 97th probe and a slow (degraded) one on every 45th.
    """
    outages = [
        (T0 + timedelta(minutes=58, seconds=30), T0 + timedelta(hours=1, minutes=3, seconds=20)),
        (T0 + timedelta(hours=2, minutes=50), T0 + timedelta(hours=4)),
    ]
    results: list[ProbeResult] = []
    latencies: list[float] = []
    for i in range(1080):
        at = T0 + timedelta(seconds=10 * i)
        down = any(start <= at < end for start, end in outages)
        if down or i % 97 == 0:
            results.append(result("portal", at, TIMEOUT, 10.0, Health.DOWN if down else Health.UP))
            continue
        duration = 0.020 + (i % 50) * 0.004
        outcome = SLOW if i % 45 == 0 else OK
        results.append(result("portal", at, outcome, duration))
        latencies.append(duration)
    return results, latencies


async def record_known_series(store: SqliteStore) -> list[float]:
    results, latencies = known_series()
    for item in results:
        store.record(item)
    first = await store.open_incident("portal", T0 + timedelta(minutes=58, seconds=30), "timeout", "")
    await store.close_incident(first, T0 + timedelta(hours=1, minutes=3, seconds=20))
    await store.open_incident("portal", T0 + timedelta(hours=2, minutes=50), "timeout", "")
    return latencies


async def test_uptime_arithmetic_on_a_known_series(stores: StoreFactory, tmp_path: Path) -> None:
    """Exact counts, downtime and ratio over three hours; percentiles within the histogram's precision."""
    clock = Clock(T0 + timedelta(hours=3))
    async with make_store(stores, tmp_path / "store.db", clock) as store:
        latencies = await record_known_series(store)
        results, _ = known_series()
        failures = sum(1 for r in results if not r.outcome.success)
        degraded = sum(1 for r in results if r.outcome.degraded)
        assert (failures, degraded) == (100, 21)

        report = await store.uptime("portal", T0 - timedelta(days=1), T0 + timedelta(days=1))
        # Clipped to the first result and to now.
        assert (report.start, report.end) == (T0, T0 + timedelta(hours=3))
        assert (report.probes, report.failures, report.degraded, report.incidents) == (1080, 100, 21, 2)
        assert report.downtime_seconds == 290 + 600
        assert report.uptime_ratio == pytest.approx(1 - 890 / 10800)
        for value, quantile in ((report.latency_p50, 0.5), (report.latency_p95, 0.95)):
            assert value == pytest.approx(nearest_rank(latencies, quantile), rel=0.045)

        # Packed: one row per target per hour of minutes, one per day of hours, each written once it is
        # over (the day's closed hours wait unpacked in rollup_open until then).
        assert await count(store, "rollup_minute") == 3
        assert await count(store, "rollup_hour") == 0
        clock.now = T0 + timedelta(days=1)
        await store.flush()
        assert await count(store, "rollup_hour") == 1
        assert await count(store, "rollup_open") == 0
        clock.now = T0 + timedelta(hours=3)
        assert await store.uptime("portal", T0 - timedelta(days=1), T0 + timedelta(days=1)) == report
        minutes = [
            entry
            for (blob,) in await store.reader.execute_fetchall("SELECT minutes FROM rollup_minute")
            for entry in packed.decode(blob, False).values()
        ]
        assert len(minutes) == 180
        assert (sum(e.probes for e in minutes), sum(e.failures for e in minutes)) == (1080, 100)
        [(probes, failures, blob)] = await store.reader.execute_fetchall(
            "SELECT probes, failures, hours FROM rollup_hour"
        )
        hours = packed.decode(blob, True)
        assert sorted(hours) == [0, 1, 2]
        assert (sum(e.probes for e in hours.values()), sum(e.failures for e in hours.values())) == (1080, 100)
        assert (probes, failures) == (1080, 100)
        assert packed.day_histogram(blob) == latency.histogram_of(latencies)


async def test_uptime_windows_clip_incidents_across_minute_and_hour_boundaries(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Partial windows count each incident once, clipped exactly, with minute-exact probe counts."""
    clock = Clock(T0 + timedelta(hours=3))
    async with make_store(stores, tmp_path / "store.db", clock) as store:
        await record_known_series(store)
        results, _ = known_series()

        def expected(start: datetime, end: datetime) -> tuple[int, int]:
            inside = [r for r in results if start <= r.at < end]
            return len(inside), sum(1 for r in inside if not r.outcome.success)

        # Inside the first outage, straddling the hour boundary.
        start, end = T0 + timedelta(minutes=59), T0 + timedelta(hours=1, minutes=2)
        report = await store.uptime("portal", start, end)
        assert report.downtime_seconds == 180
        assert report.uptime_ratio == 0
        assert (report.probes, report.failures) == expected(start, end) == (18, 18)

        # Whole hours in the middle plus partial hours at both ends (hour and minute rollups combined).
        start, end = T0 + timedelta(minutes=30), T0 + timedelta(hours=2, minutes=55)
        report = await store.uptime("portal", start, end)
        assert report.downtime_seconds == 290 + 300
        assert report.incidents == 2
        assert report.uptime_ratio == pytest.approx(1 - 590 / (145 * 60))
        assert (report.probes, report.failures) == expected(start, end)

        # A window with no incident.
        start, end = T0 + timedelta(hours=1, minutes=10), T0 + timedelta(hours=2)
        report = await store.uptime("portal", start, end)
        assert (report.downtime_seconds, report.incidents, report.uptime_ratio) == (0, 0, 1.0)
        assert (report.probes, report.failures) == expected(start, end)

        # Later, while probes keep failing, the still-open incident keeps counting up to now.
        clock.now = T0 + timedelta(hours=3, minutes=30)
        for i in range(180):
            at = T0 + timedelta(hours=3, seconds=10 * i)
            store.record(result("portal", at, TIMEOUT, 10.0, Health.DOWN))
        report = await store.uptime("portal", T0, T0 + timedelta(days=1))
        assert report.downtime_seconds == 290 + 40 * 60
        assert report.end == clock.now
        assert report.uptime_ratio == pytest.approx(1 - (290 + 2400) / (3.5 * 3600))


async def test_uptime_all_matches_uptime_per_target(stores: StoreFactory, tmp_path: Path) -> None:
    """uptime_all reports every known target exactly as uptime does, including unflushed results."""
    clock = Clock(T0 + timedelta(hours=3))
    async with make_store(stores, tmp_path / "store.db", clock, flush_interval=3600) as store:
        await record_known_series(store)
        for i in range(360):
            at = T0 + timedelta(hours=1, seconds=10 * i)
            store.record(result("db", at, TIMEOUT if i < 12 else OK, 10.0 if i < 12 else 0.002))
        window = (T0 + timedelta(minutes=15), T0 + timedelta(hours=2, minutes=45))
        everything = {report.target: report for report in await store.uptime_all(*window)}
        assert sorted(everything) == ["db", "portal"]
        for name, report in everything.items():
            assert report == await store.uptime(name, *window)
        assert everything["db"].start == T0 + timedelta(hours=1)
        assert (everything["db"].probes, everything["db"].failures) == (360, 12)
        assert everything["db"].uptime_ratio == 1.0
        missing = await store.uptime("nobody", *window)
        assert (missing.uptime_ratio, missing.probes) == (None, 0)


async def test_maintenance_results_are_rows_but_not_failures(stores: StoreFactory, tmp_path: Path) -> None:
    """Failures inside maintenance are stored and marked, counted as maintenance, and cost no uptime."""
    clock = Clock(T0 + timedelta(hours=1))
    async with make_store(stores, tmp_path / "store.db", clock) as store:
        for i in range(360):
            at = T0 + timedelta(seconds=10 * i)
            maintenance = 60 <= i < 120
            outcome = TIMEOUT if maintenance else OK
            store.record(
                result("portal", at, outcome, 10.0 if maintenance else 0.03, in_maintenance=maintenance)
            )
        report = await store.uptime("portal", T0, T0 + timedelta(hours=1))
        assert (report.probes, report.failures, report.maintenance) == (360, 0, 60)
        assert (report.uptime_ratio, report.incidents) == (1.0, 0)
        marked = [row for row in await raw_rows(store, "portal") if row[4] == 1]
        assert len(marked) == 60
        assert all(row[2] == 0 for row in marked)


async def test_old_windows_fall_back_to_hour_rollups(stores: StoreFactory, tmp_path: Path) -> None:
    """Once minute rollups are expired, a partial hour is counted from the whole hour rollup."""
    clock = Clock(T0 + timedelta(hours=3))
    async with make_store(stores, tmp_path / "store.db", clock, minute_retention=timedelta(hours=1)) as store:
        await record_known_series(store)
        clock.now = T0 + timedelta(hours=4)
        deleted = await store.run_retention()
        assert deleted == 3  # every packed hour of minutes of the series is older than one hour
        report = await store.uptime("portal", T0 + timedelta(minutes=30), T0 + timedelta(hours=1))
        # The whole first hour is counted: minute detail is gone.
        assert report.probes == 360
        assert report.downtime_seconds == 90  # incidents stay exact


# --- retention ------------------------------------------------------------------------------------------


async def test_retention_deletes_exactly_the_expired_rows_in_batches(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Raw rows, minute and hour rollups and closed incidents go at their own ages, a few at a time."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    clock = Clock(now)
    async with make_store(stores, tmp_path / "store.db", clock) as store:
        for age in (
            timedelta(days=800),
            timedelta(days=400),
            timedelta(days=100),
            timedelta(days=6),
            timedelta(hours=1),
        ):
            store.record(result("portal", now - age, TIMEOUT, 10.0))
        for i in range(20):  # 200 s from a minute boundary: 20 raw rows, 1 packed hour and 1 packed day
            store.record(
                result("portal", now - timedelta(days=10) + timedelta(seconds=10 * i), TIMEOUT, 10.0)
            )
        old = await store.open_incident("portal", now - timedelta(days=801), "timeout", "")
        await store.close_incident(old, now - timedelta(days=800))
        recent = await store.open_incident("portal", now - timedelta(days=11), "timeout", "")
        await store.close_incident(recent, now - timedelta(days=10))
        ongoing = await store.open_incident("db", now - timedelta(days=900), "refused", "")
        await store.flush()
        assert [await count(store, t) for t in ("probe_results", "rollup_minute", "rollup_hour")] == [
            25,
            6,
            6,
        ]

        statements: list[str] = []
        async with traced(store, statements):
            deleted = await store.run_retention(batch=5)

        assert deleted == 23 + 3 + 1 + 1
        assert [await count(store, t) for t in ("probe_results", "rollup_minute", "rollup_hour")] == [2, 3, 5]
        assert sorted(i.id for i in await store.incidents(now - timedelta(days=3000))) == sorted(
            [recent, ongoing]
        )
        raw_deletes = [s for s in statements if s.lstrip().startswith("DELETE FROM probe_results")]
        assert len(raw_deletes) == 5  # 5 + 5 + 5 + 5 + 3
        assert sum(1 for s in statements if s == "COMMIT") >= 5 + 1 + 1 + 1
        assert await store.run_retention(batch=5) == 0


async def test_writer_runs_retention_by_itself(stores: StoreFactory, tmp_path: Path) -> None:
    """The background writer applies retention periodically without anyone calling it."""
    now = T0 + timedelta(days=30)
    clock = Clock(now)
    store = make_store(
        stores, tmp_path / "store.db", clock, flush_interval=0.01, retention_interval=timedelta(seconds=0.05)
    )
    async with store:
        store.record(result("portal", now - timedelta(days=8), TIMEOUT, 10.0))
        store.record(result("portal", now - timedelta(minutes=1), TIMEOUT, 10.0))
        await store.flush()
        await eventually(lambda: count(store, "probe_results"), 1)
        [(_, at, *_rest)] = await raw_rows(store)
        assert at == int((now - timedelta(minutes=1)).timestamp() * 1000)


# --- key/value, readiness, read-only --------------------------------------------------------------------


async def test_key_value_round_trip_survives_reopen(stores: StoreFactory, tmp_path: Path) -> None:
    """set_value commits at once; the newest value is there after a reopen and in a read-only store."""
    path = tmp_path / "store.db"
    clock = Clock(T0)
    async with make_store(stores, path, clock, flush_interval=3600) as store:
        assert await store.get_value("zalo.refresh_token") is None
        await store.set_value("zalo.refresh_token", "first")
        await store.set_value("zalo.refresh_token", "second")
        readonly = await stores.open_readonly(path)
        try:
            assert await readonly.get_value("zalo.refresh_token") == "second"
        finally:
            await readonly.close()
        if not stores.postgres:
            sync = await store.connection.execute_fetchall("PRAGMA synchronous")
            assert sync[0][0] == 1  # back to NORMAL after the durable write
    async with make_store(stores, path, clock) as store:
        assert await store.get_value("zalo.refresh_token") == "second"


async def test_readonly_store_reads_while_the_daemon_writes(stores: StoreFactory, tmp_path: Path) -> None:
    """A read-only store on the same file sees each committed batch and refuses to write."""
    path = tmp_path / "odd name #1?" / "store.db"  # the readers open the file by URI
    clock = Clock(T0 + timedelta(hours=1))
    async with make_store(stores, path, clock) as daemon:
        for i in range(60):
            daemon.record(result("portal", T0 + timedelta(seconds=10 * i)))
        await daemon.flush()
        cli = await stores.open_readonly(path, clock=clock)
        try:
            assert isinstance(cli, Store)
            assert (await cli.uptime("portal", T0, T0 + timedelta(hours=1))).probes == 60
            for i in range(60, 120):
                daemon.record(result("portal", T0 + timedelta(seconds=10 * i), TIMEOUT, 10.0))
            await daemon.flush()
            report = await cli.uptime("portal", T0, T0 + timedelta(hours=1))
            assert (report.probes, report.failures) == (120, 60)
            with pytest.raises(StoreError, match="read-only"):
                cli.record(result("portal", T0))
            with pytest.raises(StoreError, match="read-only"):
                await cli.set_value("k", "v")
            assert await cli.writable() is False
            assert await daemon.writable() is True
        finally:
            await cli.close()


async def test_record_never_waits_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """SQLite only (a file lock; PostgreSQL's outage is in test_store_outage.py): with the file locked,
    record() stays instant and the buffer grows; it drains once the lock goes."""
    path = tmp_path / "store.db"
    clock = Clock(T0 + timedelta(hours=1))
    store = SqliteStore(path, clock=clock, flush_interval=0.02, busy_timeout=0.05)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        slowest = 0.0
        for i in range(500):
            began = time.perf_counter()
            store.record(result("portal", T0 + timedelta(seconds=i), TIMEOUT, 1.0))
            slowest = max(slowest, time.perf_counter() - began)
            if i % 50 == 0:
                await asyncio.sleep(0.02)  # let the writer try (and fail) in between
        assert slowest < 0.005
        assert store.pending_writes == 500
        # Readiness is read from what the writer saw: its flushes failed on the lock.
        assert await store.writable() is False
        other.execute("ROLLBACK")
        await eventually(lambda: asyncio.sleep(0, store.pending_writes), 0)
        assert await store.writable() is True
        assert await count(store, "probe_results") == 500
        assert (await store.uptime("portal", T0, T0 + timedelta(hours=1))).failures == 500
    finally:
        other.close()
        await store.close()


async def test_transaction_commits_or_rolls_back_for_extensions(stores: StoreFactory, tmp_path: Path) -> None:
    """Other modules write their own tables through transaction(); an error rolls the whole block back."""
    extended = (*MIGRATIONS, Migration(NEXT, "outbox", "CREATE TABLE test_outbox (body TEXT NOT NULL);"))
    async with make_store(stores, tmp_path / "store.db", Clock(T0), migrations=extended) as store:
        async with store.transaction() as conn:
            await conn.execute("INSERT INTO test_outbox VALUES ('kept')")
        with pytest.raises(RuntimeError):
            async with store.transaction() as conn:
                await conn.execute("INSERT INTO test_outbox VALUES ('dropped')")
                raise RuntimeError("boom")
        rows = await store.reader.execute_fetchall("SELECT body FROM test_outbox")
        assert [row[0] for row in rows] == ["kept"]


async def test_from_config_uses_the_store_section(tmp_path: Path) -> None:
    """The config's retention and intervals reach the store."""
    config = StoreConfig(path=tmp_path / "cfg.db", raw_retention="3d", flush_interval="250ms")
    store = store_from_config(config)
    assert (store.raw_retention, store.flush_interval, store.path) == (
        timedelta(days=3),
        0.25,
        tmp_path / "cfg.db",
    )
    assert "cfg.db" in repr(store)


# --- codes and histogram --------------------------------------------------------------------------------


def test_every_failure_reason_has_a_distinct_code() -> None:
    """Each FailureReason is stored as its own short code."""
    assert set(REASON_CODES) == set(FailureReason)
    assert len(set(REASON_CODES.values())) == len(REASON_CODES)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.001, max_value=120.0), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.95]),
)
def test_histogram_percentile_is_within_bucket_precision(values: list[float], quantile: float) -> None:
    """The estimate lands within 4.5 % of the true nearest-rank percentile."""
    counts = latency.histogram_of(values)
    decoded = latency.decode(latency.encode(counts))
    assert decoded == counts
    estimate = latency.percentile(decoded, quantile, max(values))
    assert estimate == pytest.approx(nearest_rank(values, quantile), rel=0.045)


def test_histogram_encodings_concatenate_and_merge() -> None:
    """Concatenated encodings decode to the sum; huge counts survive; an empty histogram has no percentile."""
    first = {latency.bucket_index(0.05): 70_000, latency.bucket_index(2.0): 3}
    second = {latency.bucket_index(0.05): 5, 0: 1}
    total = latency.decode(latency.encode(first) + latency.encode(second))
    assert total == {latency.bucket_index(0.05): 70_005, latency.bucket_index(2.0): 3, 0: 1}
    assert latency.decode(latency.merge_encoded(latency.encode(first), latency.encode(second))) == total
    assert latency.percentile({}, 0.5) is None
    assert latency.bucket_index(10_000) == latency.BUCKETS - 1


# --- packed rollups -------------------------------------------------------------------------------------


async def test_restart_merges_into_the_packed_rows_without_double_counting(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Results after a reopen join the same packed hour and day rows; nothing is lost or counted twice."""
    path = tmp_path / "store.db"
    clock = Clock(T0 + timedelta(hours=2))
    async with make_store(stores, path, clock) as store:
        for i in range(90):  # 00:00-00:15, with every 10th a timeout
            store.record(result("portal", T0 + timedelta(seconds=10 * i), TIMEOUT if i % 10 == 0 else OK))
        await store.flush()
        for i in range(90, 180):  # flushed again: the cached rows are rewritten, not added twice
            store.record(result("portal", T0 + timedelta(seconds=10 * i), OK, 0.2))
    async with make_store(stores, path, clock) as store:
        # The same minute as the last result before the restart, then the next hour.
        for i in range(179, 540):
            store.record(result("portal", T0 + timedelta(seconds=10 * i), OK, 0.02))
        report = await store.uptime("portal", T0, T0 + timedelta(hours=2))
        assert (report.probes, report.failures) == (90 + 90 + 361, 9)
        assert report.latency_p95 == pytest.approx(0.2, rel=0.045)
        edge = await store.uptime("portal", T0 + timedelta(minutes=29), T0 + timedelta(minutes=31))
        assert edge.probes == 13
        clock.now = T0 + timedelta(days=1)  # the day is over: its hours are packed too
        await store.flush()
        assert [await count(store, t) for t in ("rollup_minute", "rollup_hour", "rollup_open")] == [2, 1, 0]
        clock.now = T0 + timedelta(hours=2)
        assert await store.uptime("portal", T0, T0 + timedelta(hours=2)) == report


def test_packs_round_trip_with_wide_values_and_round_maxima_up() -> None:
    """Counts and histograms survive packing exactly at any size; sums within 2.2 %, maxima rounded up."""
    entries: dict[int, packed.Counts] = {}
    for offset, (probes, big) in enumerate([(6, 0), (300, 70_000), (1, 5_000_000_000)]):
        counts = packed.Counts()
        counts.probes, counts.failures, counts.degraded, counts.maintenance = probes, 1, 2, 3
        counts.latency_sum_us, counts.latency_max_us = 1000 * big, 1001 + big * 100
        counts.histogram = {0: 1, 7: big + 1, 143: 2} if big else {}
        entries[offset * 7] = counts
    blob = packed.encode(entries, True)
    back = packed.decode(blob, True)
    assert sorted(back) == [0, 7, 14]
    for offset, counts in entries.items():
        got = back[offset]
        assert (got.probes, got.failures, got.degraded, got.maintenance) == (counts.probes, 1, 2, 3)
        assert got.latency_sum_us == pytest.approx(counts.latency_sum_us, rel=0.022)
        assert counts.latency_max_us <= got.latency_max_us <= counts.latency_max_us * 1.044
        assert got.latency_max_us == packed.ceil_latency(counts.latency_max_us)
        assert got.histogram == counts.histogram
    assert packed.day_histogram(blob) == packed.histogram_total(entries.values())
    # Packing what was read back changes nothing (late results re-pack a row), and no histogram is fine.
    assert packed.encode(back, True) == blob
    assert packed.decode(packed.encode(entries, False), False)[7].histogram == {}
    with pytest.raises(ValueError, match="unknown rollup pack version"):
        packed.decode(b"\x09", True)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 23),
        st.dictionaries(st.integers(0, latency.BUCKETS - 1), st.integers(1, 100_000), max_size=12),
        min_size=1,
    )
)
def test_hour_histograms_pack_losslessly(histograms: dict[int, dict[int, int]]) -> None:
    """Histograms coded as differences from the day's total come back exactly, whatever their shape."""
    entries = {}
    for offset, histogram in histograms.items():
        counts = entries[offset] = packed.Counts()
        counts.probes = sum(histogram.values())
        counts.histogram = histogram
    blob = packed.encode(entries, True)
    assert {offset: c.histogram for offset, c in packed.decode(blob, True).items()} == histograms
    assert packed.day_histogram(blob) == packed.histogram_total(entries.values())


def test_version_1_packs_still_read() -> None:
    """Rows packed by the first format (plain offsets, fixed latency units) decode as before."""
    blob = bytes.fromhex(
        "01636264609cc0c4c880099841041388d061a03360c22fcd486ff7006d646562cb6060646404590e444c9797b2703229"
        "2a3233338a3030b24d608284167e970db6701ca8d00400"
    )
    entries = packed.decode(blob, True, 100)
    assert sorted(entries) == [0, 5]
    assert (entries[5].probes, entries[5].failures, entries[5].latency_sum_us) == (360, 0, 246_900)
    assert entries[0].latency_max_us == 80_100
    assert entries[5].histogram == {0: 1, 30: 300, 143: 2}
    assert packed.day_histogram(blob) == {0: 1, 20: 3, 25: 2, 30: 300, 143: 2}


async def test_open_minutes_stay_in_memory_and_late_results_merge_into_packed_rows(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """A flush writes only closed minutes; reports add the open ones; a late result joins its packed row."""
    clock = Clock(T0 + timedelta(minutes=1, seconds=30))
    async with make_store(stores, tmp_path / "store.db", clock, flush_interval=3600) as store:
        for i in range(9):  # 00:00:00 - 00:01:20: minute 00:00 is closed at 00:01:30, 00:01 is open
            store.record(result("portal", T0 + timedelta(seconds=10 * i), TIMEOUT if i == 8 else OK))
        await store.flush()
        staged = await store.reader.execute_fetchall("SELECT size, bucket, probes FROM rollup_open")
        assert staged == [(60, int(T0.timestamp()), 6)]
        report = await store.uptime("portal", T0, T0 + timedelta(hours=1))
        assert (report.probes, report.failures) == (9, 1)

        clock.now = T0 + timedelta(hours=1)  # the hour is over: its minutes become one packed row
        await store.flush()
        assert [await count(store, t) for t in ("rollup_minute", "rollup_open")] == [1, 1]  # hour 0 staged
        store.record(result("portal", T0 + timedelta(minutes=59, seconds=55), TIMEOUT))  # arrives late
        await store.flush()
        [(blob,)] = await store.reader.execute_fetchall("SELECT minutes FROM rollup_minute")
        entries = packed.decode(blob, False)
        assert sorted(entries) == [0, 1, 59]
        assert (entries[59].probes, entries[59].failures) == (1, 1)
        report = await store.uptime("portal", T0, T0 + timedelta(hours=1))
        assert (report.probes, report.failures) == (10, 2)
        partial = await store.uptime("portal", T0 + timedelta(minutes=1), T0 + timedelta(minutes=30))
        assert (partial.probes, partial.failures) == (3, 1)
