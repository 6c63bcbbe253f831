"""Dossier sources handed between replicas on one store (both engines): the member taking a source over
reads its dossiers from the store and plans their deadlines without publishing recorded crossings again;
the member giving it up stops syncing it and forgets its dossiers. Figures of the shared tables are
exported by the leader only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from monitor.config import Config
from monitor.dossiers.service import DossierService
from monitor.events import DossierThresholdCrossed, EventBus
from monitor.simulator import Simulator
from tests.dossier_helpers import Clock
from tests.store_engines import StoreFactory
from tests.test_sync import START, opencps


def _service(store: object, sim: Simulator, clock: Clock, leader: Callable[[], bool]) -> DossierService:
    return DossierService(Config(), store, EventBus(), clock, sources=[opencps(sim)], leader=leader)  # type: ignore[arg-type]


def _scrape(service: DossierService) -> str:
    registry = CollectorRegistry()
    registry.register(service.collector)
    return generate_latest(registry).decode()


async def test_a_source_moves_between_members_with_its_dossiers(stores: StoreFactory, tmp_path: Path) -> None:
    """A syncs the source; B takes it over from the store (same dossiers, same deadline states, no crossing
    published twice) while A forgets it; only the leader exports finished totals and ratios."""
    clock = Clock(START)
    sim = Simulator(seed=11, clock=clock, dossier_count=120, tls=False, tick_interval=3600)
    await sim.start()
    first_store = stores.new(tmp_path / "shared.db", clock=clock, flush_interval=0.05)
    second_store = stores.new(tmp_path / "shared.db", clock=clock, flush_interval=0.05)
    await first_store.open()
    await second_store.open()
    leads = {"first": True}
    first = _service(first_store, sim, clock, lambda: leads["first"])
    second = _service(second_store, sim, clock, lambda: not leads["first"])
    second_events = second.engine.bus.subscribe("test")
    try:
        await first.start(sync=False, owned={"sim"})
        await second.start(sync=False, owned=set())
        outcome = await first.sync.sync_once("sim", full=True)
        assert outcome.ok and outcome.listed > 0
        await first.refresh_aggregates()
        await second.refresh_aggregates()
        tracked = set(first.dossier_store.tracked)
        assert tracked and not second.dossier_store.tracked
        states = {code: first.engine.state_of(code) for code in tracked}
        crossed = await first_store.reader.execute_fetchall("SELECT count(*) FROM dossier_crossings")
        assert crossed[0][0] > 0, "the simulator's overdue dossiers cross at the first sync"

        # Ownership moves: the source goes to the second member.
        await first.reassign(set())
        await second.reassign({"sim"})
        assert not first.dossier_store.tracked and first.engine.tracked == 0
        assert set(second.dossier_store.tracked) == tracked
        assert {code: second.engine.state_of(code) for code in tracked} == states
        republished = []
        while second_events.backlog:
            event = second_events._queue.get_nowait()
            if isinstance(event, DossierThresholdCrossed):
                republished.append(event)
        assert republished == [], "crossings recorded by the first member are not published again"
        assert first.sync.runs("sim") is False and second.sync.runs("sim") is True
        # The new owner syncs on: nothing changed at the source, so nothing is written.
        again = await second.sync.sync_once("sim", full=True)
        assert again.ok and again.changed == 0 and again.published == 0

        # Only the leader exports figures of the shared tables; per-source series only from the owner.
        on_first, on_second = _scrape(first), _scrape(second)
        assert 'tthc_dossier_sync_last_success_timestamp_seconds{source="sim"}' in on_second
        assert 'tthc_dossier_sync_last_success_timestamp_seconds{source="sim"}' not in on_first
        assert "tthc_dossier_on_time_ratio{" in on_first or "tthc_dossiers_finished_total{" in on_first
        assert (
            "tthc_dossier_on_time_ratio{" not in on_second
            and "tthc_dossiers_finished_total{" not in on_second
        )
        leads["first"] = False
        assert "tthc_dossier_on_time_ratio{" not in _scrape(first)
        assert "tthc_dossiers_finished_total{" not in _scrape(first)
        await second.refresh_aggregates()
        assert _scrape(second).count("tthc_dossiers_finished_total{") == on_first.count(
            "tthc_dossiers_finished_total{"
        )
    finally:
        await first.stop(0.5)
        await second.stop(0.5)
        await first_store.close()
        await second_store.close()
        await sim.stop()
