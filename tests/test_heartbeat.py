"""The daemon's heartbeat on both engines (a SQLite file, a PostgreSQL schema): run intervals bound
monitored time, the off time between two runs is unmonitored and never down, and another process reads
the daemon's open rollups (counts and latency percentiles of the current hour) exactly as the daemon does,
without counting any twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from monitor.model import Health
from monitor.store.heartbeat import Heartbeat
from tests.store_engines import StoreFactory
from tests.test_store import T0, TIMEOUT, Clock, count, eventually, result

HOUR = timedelta(hours=1)


async def _last_seen(stores: StoreFactory, path: Path) -> list[tuple]:
    async with stores.new(path, readonly=True) as reader:
        return list(
            await reader.reader.execute_fetchall(
                "SELECT started_at, last_seen_at, stopped_at FROM monitor_runs ORDER BY id"
            )
        )


def _ms(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp() * 1000)


async def test_heartbeat_beats_without_flushes_and_a_stop_ends_the_run(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """With nothing to flush the heartbeat commits alone; a clean stop sets stopped_at; a second run
    leaves the time between them unmonitored, and an incident open across it is not down meanwhile."""
    path = tmp_path / "store.db"
    clock = Clock(T0)
    async with stores.new(path, clock=clock, flush_interval=0.05) as store:
        beat = Heartbeat(store, timedelta(seconds=0.05), clock)
        await beat.start()
        store.record(result("portal", T0))
        clock.now = T0 + timedelta(seconds=30)
        await eventually(lambda: _last_seen(stores, path), [(_ms(0), _ms(30), None)])
        incident = await store.open_incident("portal", T0 + timedelta(seconds=20), "timeout", "")
        store.record(result("portal", clock.now, TIMEOUT, health=Health.DOWN))
        clock.now = T0 + timedelta(seconds=40)
        await beat.stop()
        assert await _last_seen(stores, path) == [(_ms(0), _ms(40), _ms(40))]

        # Off for 10 minutes, then a second run closes the incident 20 s in.
        clock.now = T0 + timedelta(minutes=10, seconds=40)
        second = Heartbeat(store, timedelta(seconds=0.05), clock)
        await second.start()
        store.record(result("portal", clock.now, TIMEOUT, health=Health.DOWN))
        clock.now += timedelta(seconds=20)
        await store.close_incident(incident, clock.now)
        store.record(result("portal", clock.now))
        clock.now += timedelta(seconds=40)
        report = await store.uptime("portal", T0, T0 + HOUR)
        await second.stop()
    assert report.unmonitored_seconds == 600
    # Down 20 s in the first run and 20 s in the second; the 600 s off are neither.
    assert report.downtime_seconds == 40
    assert report.uptime_ratio == 1 - 40 / (40 + 60)
    async with stores.new(path, readonly=True) as reader:
        later = await reader.uptime("portal", T0, T0 + HOUR)
        coverage = await reader.coverage(T0, T0 + HOUR)
    assert (later.downtime_seconds, later.uptime_ratio) == (40, report.uptime_ratio)
    # A reader after both runs: the time since the last stop is unmonitored too.
    assert later.unmonitored_seconds > 600
    assert [(s.start - T0, s.end - T0) for s in coverage["portal"].monitored] == [
        (timedelta(0), timedelta(seconds=40)),
        (timedelta(minutes=10, seconds=40), timedelta(minutes=11, seconds=40)),
    ]


async def test_another_process_reads_the_open_hour_as_the_daemon_does(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """A read-only store (the CLI) gets the current hour's probes and p50/p95 from the heartbeat's copy,
    equal to the writer's figures, before and after a minute closes; the copy is gone after close."""
    path = tmp_path / "store.db"
    clock = Clock(T0 + timedelta(minutes=5))
    latencies = [0.010, 0.020, 0.030, 0.040, 0.200] * 6

    async def both() -> tuple[tuple, tuple]:
        writer = await store.uptime("portal", T0, T0 + HOUR)
        async with stores.new(path, readonly=True, clock=clock) as reader:
            other = await reader.uptime("portal", T0, T0 + HOUR)
        figures = (writer.probes, writer.latency_p50, writer.latency_p95, writer.end)
        return figures, (other.probes, other.latency_p50, other.latency_p95, other.end)

    async with stores.new(path, clock=clock, flush_interval=3600) as store:
        beat = Heartbeat(store, timedelta(seconds=1), clock)
        await beat.start()
        for index, latency in enumerate(latencies):
            store.record(result("portal", clock.now + timedelta(seconds=index), duration=latency))
        clock.now += timedelta(seconds=len(latencies))
        writer, other = await both()
        assert writer[0] == len(latencies) and writer[1] is not None and writer[2] is not None
        assert other == writer
        # The minute closes and moves to rollup_open; its copy goes in the same transaction.
        clock.now += timedelta(minutes=1)
        store.record(result("portal", clock.now, duration=0.015))
        clock.now += timedelta(seconds=2)
        writer, other = await both()
        assert writer[0] == len(latencies) + 1
        assert other == writer
        await beat.stop()
    assert await count_live(stores, path) == 0
    async with stores.new(path, readonly=True, clock=clock) as reader:
        after = await reader.uptime("portal", T0, T0 + HOUR)
    assert (after.probes, after.latency_p50, after.latency_p95) == writer[:3]


async def count_live(stores: StoreFactory, path: Path) -> int:
    async with stores.new(path, readonly=True) as reader:
        return await count(reader, "rollup_live")
