"""Dossier tracking as one daemon component: sources, sync manager, deadline engine, metrics aggregates.

The daemon creates it with the shared store, bus and clock, registers `collector` on its registry,
calls `start()` after the store is open and `stop(grace)` before closing the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog

from monitor.calendar import Calendars
from monitor.config import Config
from monitor.dossiers.engine import DeadlineEngine
from monitor.dossiers.metrics import DossierAggregates, DossierCollector
from monitor.dossiers.store import DossierStore
from monitor.dossiers.sync import SourceTiming, SyncManager
from monitor.events import EventBus
from monitor.store.sql import SqlStore
from monitor.supervisor import Supervisor
from probes.sources import DossierSource, build_source

__all__ = ["DossierReload", "DossierService"]

log = structlog.get_logger("monitor.dossiers.model")


@dataclass(frozen=True, slots=True)
class DossierReload:
    """What a reload will change here, every new object already built (`DossierService.prepare_reload`)."""

    config: Config
    calendars: Calendars
    calendars_changed: bool
    thresholds_changed: bool
    # New or changed sources, built and not started; removed ones by name.
    sources: Mapping[str, DossierSource]
    removed: tuple[str, ...]


class DossierService:
    """Owns the dossier components; `sources` may be injected (tests), else built from the config."""

    def __init__(
        self,
        config: Config,
        store: SqlStore,
        bus: EventBus,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        sources: Sequence[DossierSource] | None = None,
        session: aiohttp.ClientSession | None = None,
        supervisor: Supervisor | None = None,
        leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self._supervisor = supervisor or Supervisor()
        # Replicas: only the leader computes and exports the figures of the shared tables.
        self._leader = leader
        self.config = config
        section = config.dossiers
        self.settings = section
        self.clock = clock
        self.calendars = Calendars(config.calendars, config.zone)
        self.dossier_store = DossierStore(store)
        self.engine = DeadlineEngine(
            self.calendars,
            section.threshold_amounts,
            self.dossier_store,
            store,
            bus,
            clock,
            self._dossier_system_targets,
            outage_window=section.outage_amount,
            supervisor=self._supervisor,
        )
        built = (
            list(sources)
            if sources is not None
            else [build_source(s, session=session) for s in section.sources]
        )
        timings = {s.name: SourceTiming(s.interval, s.full_interval) for s in section.sources}
        for source in built:
            # Injected sources without a config entry (tests) get the config's default periods.
            timings.setdefault(source.name, SourceTiming(timedelta(minutes=2), timedelta(minutes=30)))
        self.sync = SyncManager(
            built,
            timings,
            self.dossier_store,
            self.engine,
            bus,
            clock,
            vanish_after=section.vanish_after,
            suspicious_drop=section.suspicious_drop,
            supervisor=self._supervisor,
        )
        self.aggregates = DossierAggregates()
        self.collector = DossierCollector(
            self.engine, self.sync, self.aggregates, procedure_label=section.procedure_label, leader=leader
        )
        self._aggregate_task: asyncio.Task[None] | None = None

    def _dossier_system_targets(self) -> list[str]:
        explicit = self.settings.dossier_system_targets
        if explicit is not None:
            return list(explicit)
        return [target.name for target in self.config.targets if target.dossier_system]

    async def start(self, *, sync: bool = True, owned: Collection[str] | None = None) -> None:
        """Load from the store, resume the engine (publishing what was crossed while stopped), sync.

        `owned` (replicas): the sources this member syncs; only their dossiers are tracked here."""
        if owned is None:
            await self.dossier_store.load()
        else:
            self.sync.active = set(owned)
            self.dossier_store.tracked, self.dossier_store.closed = {}, {}
            await self.dossier_store.load(list(self.sync.active))
        self.sync.prime()
        await self.engine.load()
        self.engine.start()
        await self.refresh_aggregates()
        self._aggregate_task = self._supervisor.spawn("dossier-aggregates", self._refresh_loop)
        if sync:
            self.sync.start()
        log.info("dossier_tracking_started", tracked=self.engine.tracked, sources=len(self.sync.sources))

    async def reassign(self, owned: Collection[str]) -> None:
        """Replicas: track and sync exactly the sources in `owned`. A source given up stops syncing and
        its dossiers leave memory (their deadlines are the new owner's); one taken over has its dossiers
        read from the store and its deadlines planned (crossings already recorded are not published
        again, those due meanwhile are), then syncs on its own schedule."""
        gained, lost = await self.sync.reassign(owned)
        if lost:
            self.engine.drop(self.dossier_store.forget(lost))
        if gained:
            try:
                await self.dossier_store.load(sorted(gained))
                recorded = await self.dossier_store.recorded_crossings()
                dossiers = [
                    t.dossier
                    for t in self.dossier_store.tracked.values()
                    if t.dossier.source in gained and not t.vanished
                ]
                await self.engine.update(dossiers, recorded=recorded)
            except BaseException:
                # Not taken over after all: the next reassign takes these sources over from the start.
                self.sync.active = (self.sync.active or set()) - gained
                self.engine.drop(self.dossier_store.forget(gained))
                raise
            self.sync.spawn(sorted(gained))
        if gained or lost:
            log.info("dossier_sources_reassigned", gained=sorted(gained), lost=sorted(lost))

    async def refresh_aggregates(self) -> None:
        if not self._leader():
            return
        now = self.clock()
        await self.aggregates.refresh(
            self.dossier_store,
            now,
            now - self.settings.on_time_window,
            procedure=self.settings.procedure_label,
        )

    async def _refresh_loop(self) -> None:
        interval = self.settings.aggregate_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_aggregates()
            except Exception:
                log.exception("dossier_aggregates_failed")

    # --- reload --------------------------------------------------------------------------------------

    async def prepare_reload(self, config: Config) -> DossierReload:
        """Build what `config` changes (calendars, new or changed sources) without touching anything
        running; raises on a source that cannot be built (nothing built is left open)."""
        calendars = Calendars(config.calendars, config.zone)
        section = config.dossiers
        old = {source.name: source for source in self.settings.sources}
        built: dict[str, DossierSource] = {}
        try:
            for source in section.sources:
                if old.get(source.name) != source:
                    built[source.name] = build_source(source)
        except Exception:
            for done in built.values():
                with suppress(Exception):
                    await done.close()
            raise
        names = {source.name for source in section.sources}
        return DossierReload(
            config=config,
            calendars=calendars,
            calendars_changed=config.calendars != self.config.calendars,
            thresholds_changed=section.thresholds != self.settings.thresholds,
            sources=built,
            removed=tuple(name for name in old if name not in names),
        )

    async def discard_reload(self, prepared: DossierReload) -> None:
        """Close what `prepare_reload` built (another section's preparation failed)."""
        for source in prepared.sources.values():
            with suppress(Exception):
                await source.close()

    async def apply_reload(self, prepared: DossierReload) -> None:
        """Swap in a prepared reload: calendars and thresholds re-plan every deadline, changed sources
        restart (after their in-flight sync), unchanged ones keep running."""
        config = prepared.config
        self.config = config
        self.settings = config.dossiers
        if prepared.calendars_changed:
            # In place: the alert router and digest hold this same object.
            self.calendars.adopt(prepared.calendars)
        if prepared.calendars_changed or prepared.thresholds_changed:
            await self.engine.replan(thresholds=self.settings.threshold_amounts)
        self.sync.vanish_after = self.settings.vanish_after
        self.sync.suspicious_drop = self.settings.suspicious_drop
        timings = {s.name: SourceTiming(s.interval, s.full_interval) for s in self.settings.sources}
        await self.sync.replace_sources(prepared.sources, timings, prepared.removed)

    async def stop(self, grace: float | None = None) -> None:
        """Stop syncing (in-flight syncs get `grace` seconds, then are cancelled), then the timers."""
        await self.sync.stop(self.settings.shutdown_grace.total_seconds() if grace is None else grace)
        task, self._aggregate_task = self._aggregate_task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await self.engine.stop()
