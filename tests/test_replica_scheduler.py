"""Scheduler.reassign on both engines (two schedulers, two stores on one file or schema): a target given up
keeps its open incident, the member taking it over continues that incident (same id) and closes it when
the target recovers; targets kept are not disturbed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.config import load_config_text
from monitor.events import EventBus, IncidentClosed, IncidentOpened
from monitor.scheduler import Scheduler
from monitor.store import SqlStore
from tests.store_engines import StoreFactory
from tests.test_replica_daemons import Portals

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture
async def portals() -> AsyncIterator[Portals]:
    server = Portals()
    await server.start()
    yield server
    await server.stop()


async def _until(condition: Callable[[], object], within: float = 10.0) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _open_ids(store: SqlStore, target: str) -> list[int]:
    return [incident.id for incident in await store.open_incidents() if incident.target == target]


async def test_a_target_changes_hands_with_its_open_incident(
    stores: StoreFactory, portals: Portals, tmp_path: Path
) -> None:
    """The first member opens t0's incident and gives t0 up; the second takes it, continues the incident
    with the same id (no IncidentOpened), and closes it when t0 recovers; t1 stays with the first."""
    targets = load_config_text(
        "targets:\n"
        + "".join(
            f"  - {{name: t{i}, type: http, url: 'http://127.0.0.1:{portals.port}/t{i}', interval: 0.1s,"
            " timeout: 0.1s, failure_threshold: 1, success_threshold: 1}\n"
            for i in range(2)
        ),
        environ={},
    ).targets
    path = tmp_path / "shared.db"
    first_store = stores.new(path, flush_interval=0.05)
    second_store = stores.new(path, flush_interval=0.05)
    await first_store.open()
    await second_store.open()
    first_bus, second_bus = EventBus(), EventBus()
    second_events = second_bus.subscribe("test")
    first = Scheduler(store=first_store, bus=first_bus, zone=ZONE, start_jitter=0)
    second = Scheduler(store=second_store, bus=second_bus, zone=ZONE, start_jitter=0)
    portals.down.add("t0")
    try:
        await first.start(targets)
        await second.start([], elsewhere={"t0", "t1"})
        await _until(lambda: first.open_incident_id("t0") is not None)
        incident_id = first.open_incident_id("t0")
        await first_store.flush()

        await first.reassign([targets[1]])
        assert set(first.targets) == {"t1"} and first.open_incident_id("t0") is None
        assert await _open_ids(second_store, "t0") == [incident_id], "given up, not closed"

        await second.reassign([targets[0]])
        assert set(second.targets) == {"t0"}
        # Resumed as after a restart: closed at the last stored probe, reopened by the first failing one.
        opened: list[int] = []
        deadline = time.monotonic() + 10
        while opened != [incident_id] or second.open_incident_id("t0") != incident_id:
            assert time.monotonic() < deadline, opened
            await asyncio.sleep(0.05)
            opened = await _open_ids(second_store, "t0")
        portals.hits.clear()
        await asyncio.sleep(0.5)
        assert portals.hits["t1"] >= 2, "the target kept by the first member is still probed"

        portals.down.discard("t0")
        await _until(lambda: second.open_incident_id("t0") is None)
        await _until(lambda: second_events.backlog > 0)
        await asyncio.sleep(0.2)
        seen = []
        while second_events.backlog:
            seen.append(second_events._queue.get_nowait())
        assert not [event for event in seen if isinstance(event, IncidentOpened)]
        closed = [event for event in seen if isinstance(event, IncidentClosed)]
        assert [event.incident_id for event in closed] == [incident_id]
        assert await _open_ids(second_store, "t0") == []
    finally:
        await first.stop(1.0)
        await second.stop(1.0)
        await first_store.close()
        await second_store.close()
        first_bus.close()
        second_bus.close()
