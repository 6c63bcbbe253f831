"""The sync manager against the real simulator on 127.0.0.1: failed syncs change nothing, vanish, finish."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest

from monitor.calendar import Calendars
from monitor.dossiers.engine import DeadlineEngine
from monitor.dossiers.metrics import DossierAggregates, DossierCollector
from monitor.dossiers.store import DossierStore
from monitor.dossiers.sync import SourceTiming, SyncManager
from monitor.events import (
    DossierFinished,
    DossierSyncFailed,
    DossierSyncRecovered,
    DossierThresholdCrossed,
    DossierVanished,
    EventBus,
    Subscription,
)
from monitor.simulator import DEFAULT_PASSWORD, Simulator
from monitor.store import SqlStore
from probes.sources import OpenCpsSource, OpenCpsSourceConfig
from tests.dossier_helpers import HCM, Clock
from tests.promtool import assert_promtool_accepts
from tests.store_engines import StoreFactory

START = datetime(2026, 3, 10, 9, 0, tzinfo=HCM)


@dataclass
class Rig:
    sim: Simulator
    clock: Clock
    store: SqlStore
    dossiers: DossierStore
    engine: DeadlineEngine
    manager: SyncManager
    bus: EventBus
    events: Subscription

    def drain(self) -> list[Any]:
        found = []
        while self.events.backlog:
            found.append(self.events._queue.get_nowait())
        return found

    async def snapshot(self) -> list[tuple[Any, ...]]:
        return await self.store.reader.execute_fetchall("SELECT * FROM dossiers ORDER BY code")


def opencps(sim: Simulator, **options: Any) -> OpenCpsSource:
    config = OpenCpsSourceConfig.model_validate(
        {
            "name": "sim",
            "type": "opencps",
            "base_url": sim.api_base,
            "group_id": sim.group_id,
            "username": sim.username,
            "password": DEFAULT_PASSWORD,
            "page_size": 100,
            "attempts": 1,
            "retry_wait": "1ms",
            "timeout": "5s",
            **options,
        }
    )
    return OpenCpsSource(config)


@pytest.fixture
async def rig(stores: StoreFactory, tmp_path: Path) -> AsyncIterator[Rig]:
    """Simulator (300 dossiers, settable clock) + store + engine + sync manager over one OpenCPS source."""
    clock = Clock(START)
    sim = Simulator(seed=11, clock=clock, dossier_count=300, tls=False, tick_interval=3600)
    await sim.start()
    store = stores.new(tmp_path / "s.db", clock=clock)
    await store.open()
    bus = EventBus()
    events = bus.subscribe("test")
    dossiers = DossierStore(store)
    await dossiers.load()
    engine = DeadlineEngine(Calendars(), ["2d", "4h"], dossiers, store, bus, clock, ["dvc"])
    source = opencps(sim, timeout="300ms")
    manager = SyncManager(
        [source],
        {"sim": SourceTiming(timedelta(minutes=2), timedelta(minutes=30))},
        dossiers,
        engine,
        bus,
        clock,
        vanish_after=3,
    )
    try:
        yield Rig(sim, clock, store, dossiers, engine, manager, bus, events)
    finally:
        await manager.stop(0.5)
        await engine.stop()
        await store.close()
        await sim.stop()


async def test_full_sync_stores_open_dossiers_without_personal_data(rig: Rig) -> None:
    """A first full sync stores every received dossier, tracks the open ones and never keeps applicants."""
    outcome = await rig.manager.sync_once("sim", full=True)
    assert outcome.ok and outcome.listed > 250
    world = {d.dossier_no: d for d in rig.sim.world.dossiers if d.received_at is not None}
    rows = await rig.snapshot()
    assert {row[0] for row in rows} == set(world)
    open_codes = {code for code, d in world.items() if d.status in ("processing", "waiting")}
    assert set(rig.dossiers.tracked) == open_codes
    assert rig.engine.tracked == len(open_codes)
    text = repr(rows)
    applicants = [d.applicant for d in rig.sim.world.dossiers]
    personal = {a.phone for a in applicants} | {a.address for a in applicants}
    assert not any(value and value in text for value in personal)
    # Unchanged second listing: nothing rewritten, nothing published.
    rig.drain()
    again = await rig.manager.sync_once("sim", full=True)
    assert again.ok and again.changed == 0 and again.published == 0


@pytest.mark.parametrize(
    ("fault", "options", "reason"),
    [
        ("error_5xx", {"status": 500}, "status"),
        ("html_error", {}, "html"),
        ("truncated", {"variant": "short"}, "truncated"),
        ("truncated", {"variant": "cut"}, "not_json"),
        ("slow", {"delay": "2s"}, "timeout"),
        ("empty", {}, "suspicious_empty"),
    ],
)
async def test_every_failed_sync_mode_changes_nothing(
    rig: Rig, fault: str, options: dict, reason: str
) -> None:
    """Each fault fails the sync with its reason: no row changes, nothing vanishes, then recovery is told."""
    assert (await rig.manager.sync_once("sim", full=True)).ok
    before = await rig.snapshot()
    tracked_before = {code: t.missed for code, t in rig.dossiers.tracked.items()}
    rig.drain()
    await rig.sim.set_fault(fault, "api", **options)
    with structlog.testing.capture_logs() as logs:
        for _ in range(4):  # more than vanish_after: a failed listing must never count as "missing"
            outcome = await rig.manager.sync_once("sim", full=True)
            assert outcome.reason == reason
    assert await rig.snapshot() == before
    assert {code: t.missed for code, t in rig.dossiers.tracked.items()} == tracked_before
    failed = [e for e in rig.drain() if isinstance(e, DossierSyncFailed)]
    assert [e.consecutive_failures for e in failed] == [1, 2, 3, 4]
    assert all(e.reason == reason and e.last_success_at is not None for e in failed)
    assert any(entry["event"] == "dossier_sync_failed" and entry["reason"] == reason for entry in logs)
    assert rig.manager.stats["sim"].failures[reason] == 4
    await rig.sim.clear_faults()
    assert (await rig.manager.sync_once("sim", full=True)).ok
    assert [type(e) for e in rig.drain()] == [DossierSyncRecovered]


async def test_vanish_after_k_full_reconciles_never_finished(rig: Rig) -> None:
    """A dossier missing from 3 successful full listings in a row becomes vanished, not finished."""
    await rig.manager.sync_once("sim", full=True)
    world = rig.sim.world
    gone = next(d for d in world.dossiers if d.status == "processing" and d.received_at is not None)
    world.dossiers.remove(gone)
    world.version += 1
    rig.drain()
    for expected in (1, 2):
        assert (await rig.manager.sync_once("sim", full=True)).vanished == 0
        assert rig.dossiers.tracked[gone.dossier_no].missed == expected
        # An incremental sync never counts as a miss.
        assert (await rig.manager.sync_once("sim", full=False)).ok
    outcome = await rig.manager.sync_once("sim", full=True)
    assert outcome.vanished == 1
    row = await rig.dossiers.get(gone.dossier_no, rig.clock())
    assert row is not None and (row.status, row.state, row.timeliness) == ("vanished", "vanished", None)
    assert [e.code for e in rig.drain() if isinstance(e, DossierVanished)] == [gone.dossier_no]
    assert rig.engine.state_of(gone.dossier_no) is None
    vanished = await rig.dossiers.list_dossiers(rig.clock(), state="vanished")
    assert [r.code for r in vanished] == [gone.dossier_no]


async def test_time_moves_end_to_end_sync_engine_events(rig: Rig) -> None:
    """Simulated days pass: syncs finish dossiers (classified), the timer publishes each crossing once."""
    await rig.manager.sync_once("sim", full=True)
    calendar = Calendars().default
    published: list[DossierThresholdCrossed] = []
    finished: list[DossierFinished] = []
    for _ in range(12):
        rig.clock.set(rig.clock() + timedelta(hours=6))
        await rig.sim.advance()
        assert (await rig.manager.sync_once("sim", full=False)).ok
        await rig.engine.run_due(rig.clock())
        for event in rig.drain():
            if isinstance(event, DossierThresholdCrossed):
                published.append(event)
            elif isinstance(event, DossierFinished):
                finished.append(event)
    assert published and finished
    keys = [(e.code, e.threshold, e.due_at) for e in published]
    assert len(keys) == len(set(keys)), "a crossing was published twice"
    assert len({e.crossing_id for e in published}) == len(published)
    # Finished only because the source said so, and classified like OpenCPS does.
    for event in finished:
        sim_dossier = rig.sim.world.get(event.code)
        assert sim_dossier is not None and sim_dossier.status in ("releasing", "done", "denied")
        if sim_dossier.status != "denied":
            due = max(sim_dossier.due_at, sim_dossier.extend_at or sim_dossier.due_at)
            returned = sim_dossier.released_at or sim_dossier.finished_at
            assert event.timeliness == calendar.classify_return(due, returned).value
        assert event.code not in rig.dossiers.tracked
    summaries = await rig.dossiers.unit_summaries(rig.clock(), START)
    assert sum(s.returned_total for s in summaries) >= len([e for e in finished if e.timeliness != "none"])


async def test_metrics_pass_promtool(rig: Rig, tmp_path: Path) -> None:
    """The collector's exposition passes `promtool check metrics` and carries the documented families."""
    await rig.manager.sync_once("sim", full=True)
    await rig.sim.set_fault("error_5xx", "api")
    await rig.manager.sync_once("sim", full=True)
    await rig.sim.clear_faults()
    rig.clock.set(rig.clock() + timedelta(days=3))
    await rig.sim.advance()
    await rig.manager.sync_once("sim", full=False)
    await rig.engine.run_due(rig.clock())
    aggregates = DossierAggregates()
    await aggregates.refresh(rig.dossiers, rig.clock(), START - timedelta(days=30))
    registry = CollectorRegistry()
    registry.register(DossierCollector(rig.engine, rig.manager, aggregates))
    text = generate_latest(registry).decode()
    for family in (
        "tthc_dossiers_open{",
        "tthc_dossiers_finished_total{",
        "tthc_dossier_on_time_ratio{",
        "tthc_dossiers_via_postal_ratio{",
        "tthc_dossier_sync_last_success_timestamp_seconds{",
        "tthc_dossier_sync_duration_seconds{",
        'tthc_dossier_sync_failures_total{reason="status",source="sim"} 1.0',
        "tthc_dossier_crossings_total{",
        "# TYPE tthc_dossiers_overdue_during_outage_total counter",
    ):
        assert family in text, family
    assert "applicant" not in text and "assignee" not in text
    await assert_promtool_accepts(text)
