"""PostgreSQL's counterpart of the SQLite store outages (test_store_faults.py, test_store_outage.py): the
connection to the server dies and the server stays unreachable for a few seconds (a TCP proxy on
127.0.0.1 cut and restored, tests/pg_proxy.py). Meanwhile probe results, an incident and a key-value
write wait in memory, the store says it is not writable, and it reconnects by itself afterwards: every
buffered write is committed, nothing lost, nothing counted twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.store import PostgresStore, ProbeResult
from monitor.store.durable import until_committed
from tests.pg_proxy import PgProxy
from tests.store_engines import StoreFactory, require_postgres
from tests.test_store_faults import (
    check_oldest_samples_kept_and_every_result_counted,
    record_past_the_backlog_limit,
)

OK = ProbeOutcome(success=True)
DOWN = ProbeOutcome(success=False, reason=FailureReason.REFUSED, detail="connection refused")
CUT_SECONDS = 3.0


@pytest.fixture
async def proxy() -> AsyncIterator[PgProxy]:
    """A proxy in front of the test server (skips without one, as every PostgreSQL test)."""
    running = PgProxy(require_postgres())
    await running.start()
    try:
        yield running
    finally:
        await running.close()


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Poll `check` until it holds: reconnecting and draining have no completion event to wait on."""
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    assert await check(), "condition never held"


async def test_a_lost_connection_buffers_everything_and_commits_it_once_after_reconnecting(
    proxy: PgProxy,
) -> None:
    """Cut for 3 s: the backlog grows and writable() is false; restored: results, the incident and the
    kv write are committed once each and the store is writable again, with no restart."""
    schemas = StoreFactory("postgresql", f"outage-{uuid.uuid4()}")
    schema = schemas.schema("outage.db")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    store = PostgresStore(proxy.proxied_url, schema=schema, flush_interval=0.05)
    try:
        await store.open()
        for second in range(60):
            store.record(ProbeResult("portal", start + timedelta(seconds=second), 0.01, OK, Health.UP))
        await store.flush()
        assert await store.writable()

        proxy.cut()
        down_at = start + timedelta(minutes=1)
        for second in range(120):
            health = Health.DOWN
            store.record(ProbeResult("portal", down_at + timedelta(seconds=second), 0.01, DOWN, health))
        facts = store.facts
        incident = asyncio.create_task(
            until_committed(facts, "incident", lambda: store.open_incident("portal", down_at, "refused", ""))
        )
        token = asyncio.create_task(
            until_committed(facts, "kv", lambda: store.set_value("zalo.refresh_token", "rotated"))
        )
        await _eventually(lambda: _not(store.writable()))
        await asyncio.sleep(CUT_SECONDS)
        assert not incident.done() and not token.done()
        assert store.pending_writes == 120
        assert store.backlog >= 120 + 2, "the durable writes wait in the backlog too"
        assert not await store.writable()
        assert proxy.refused > 0, "the store tried to reconnect during the cut"

        proxy.restore()
        incident_id = await asyncio.wait_for(incident, 15)
        await asyncio.wait_for(token, 15)
        await _eventually(lambda: _drained(store))
        assert await store.writable()
        assert store.connection.reconnects >= 1
        # The reader reconnects at its next read.
        assert (await store.latest_health())["portal"] is Health.DOWN
        assert store.reader.reconnects >= 1
        # The same incident whoever asks again (it was committed once).
        assert await store.open_incident("portal", down_at, "refused", "") == incident_id
        await store.close_incident(incident_id, down_at + timedelta(minutes=2))
        store.record(ProbeResult("portal", down_at + timedelta(minutes=2), 0.01, OK, Health.UP, False, True))
        await store.close()

        direct = await PostgresStore.open_readonly(require_postgres(), schema=schema)
        try:
            report = await direct.uptime("portal", start, start + timedelta(minutes=5))
            assert (report.probes, report.failures, report.incidents) == (181, 120, 1)
            failed = "SELECT count(*) FROM probe_results WHERE success = 0"
            rows = await direct.reader.execute_fetchall(failed)
            assert rows[0][0] == 120
            assert await direct.get_value("zalo.refresh_token") == "rotated"
            assert [i.id for i in await direct.incidents(start)] == [incident_id]
        finally:
            await direct.close()
    finally:
        await store.close()
        schemas.drop()


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


async def _drained(store: PostgresStore) -> bool:
    return store.pending_writes == 0 and store.backlog == 0


async def test_a_commit_whose_answer_is_lost_is_not_written_twice(proxy: PgProxy) -> None:
    """The connection dies after the server committed a batch but before the store heard so: the store
    asks the server what became of that transaction and does not write the batch (its rollups) again."""
    schemas = StoreFactory("postgresql", f"commit-{uuid.uuid4()}")
    schema = schemas.schema("commit.db")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    store = PostgresStore(proxy.proxied_url, schema=schema, flush_interval=3600)
    try:
        await store.open()
        # Closed minutes: the flush adds them to rollup_open, which a second write would count twice.
        for second in range(0, 600, 10):
            store.record(ProbeResult("portal", start + timedelta(seconds=second), 0.01, DOWN, Health.DOWN))
        lost = proxy.lose_next_commit_answer()
        await store.flush()
        assert lost.is_set() and proxy.commits_lost == 1
        assert store.pending_writes == 0, "the committed batch is not kept for a retry"
        assert await store.writable()
        await store.flush()
        await store.close()
        direct = await PostgresStore.open_readonly(require_postgres(), schema=schema)
        try:
            report = await direct.uptime("portal", start, start + timedelta(minutes=10))
            assert (report.probes, report.failures) == (60, 60)
        finally:
            await direct.close()
    finally:
        await store.close()
        schemas.drop()


async def test_connections_the_server_ended_while_idle_are_replaced_without_a_failed_write(
    tmp_path: Path,
) -> None:
    """The server ends both idle connections (as a restart or an administrator would): the next flush
    and the next read reconnect at their first statement, with no write failing."""
    url = require_postgres()
    schemas = StoreFactory("postgresql", f"idle-{uuid.uuid4()}")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    async with schemas.new(tmp_path / "idle.db", flush_interval=3600) as store:
        try:
            store.record(ProbeResult("portal", start, 0.01, OK, Health.UP))
            await store.flush()
            pids = [
                (await store.connection.execute_fetchall("SELECT pg_backend_pid()"))[0][0],
                (await store.reader.execute_fetchall("SELECT pg_backend_pid()"))[0][0],
            ]
            with psycopg.connect(url, autocommit=True) as admin:
                for pid in pids:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            store.record(ProbeResult("portal", start + timedelta(seconds=10), 0.01, DOWN, Health.DOWN))
            await store.flush()
            assert (await store.latest_health())["portal"] is Health.DOWN
            assert dict(store.facts.errors) == {}
            assert store.connection.reconnects == 1 and store.reader.reconnects == 1
        finally:
            await store.close()
            schemas.drop()


async def test_write_buffer_stays_bounded_while_the_server_is_unreachable(proxy: PgProxy) -> None:
    """Past the backlog limit only raw samples are dropped (counted); rollups still count every result
    once the server is back (the PostgreSQL side of test_store_faults.py's locked file)."""
    schemas = StoreFactory("postgresql", f"bounded-{uuid.uuid4()}")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    limit = 1000
    store = PostgresStore(
        proxy.proxied_url, schema=schemas.schema("bounded.db"), flush_interval=0.02, raw_backlog_limit=limit
    )
    try:
        await store.open()
        proxy.cut()
        await record_past_the_backlog_limit(store, start)
        proxy.restore()
        await _eventually(lambda: _drained(store))
        await check_oldest_samples_kept_and_every_result_counted(store, start, limit)
    finally:
        await store.close()
        schemas.drop()
