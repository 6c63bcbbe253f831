"""Dossier tracking as one daemon component: sources, sync manager, deadline engine, metrics aggregates.

The daemon creates it with the shared store, bus and clock, registers `collector` on its registry,
calls `start()` after the store is open and `stop(grace)` before closing the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import suppress
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
from monitor.store.sqlite import SqliteStore
from monitor.supervisor import Supervisor
from probes.sources import DossierSource, build_source

__all__ = ["DossierService"]

log = structlog.get_logger("monitor.dossiers.model")


class DossierService:
    """Owns the dossier components; `sources` may be injected (tests), else built from the config."""

    def __init__(
        self,
        config: Config,
        store: SqliteStore,
        bus: EventBus,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        sources: Sequence[DossierSource] | None = None,
        session: aiohttp.ClientSession | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor or Supervisor()
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
            self.engine, self.sync, self.aggregates, procedure_label=section.procedure_label
        )
        self._aggregate_task: asyncio.Task[None] | None = None

    def _dossier_system_targets(self) -> list[str]:
        explicit = self.settings.dossier_system_targets
        if explicit is not None:
            return list(explicit)
        return [target.name for target in self.config.targets if target.dossier_system]

    async def start(self, *, sync: bool = True) -> None:
        """Load from the store, resume the engine (publishing what was crossed while stopped), sync."""
        await self.dossier_store.load()
        self.sync.prime()
        await self.engine.load()
        self.engine.start()
        await self.refresh_aggregates()
        self._aggregate_task = self._supervisor.spawn("dossier-aggregates", self._refresh_loop)
        if sync:
            self.sync.start()
        log.info("dossier_tracking_started", tracked=self.engine.tracked, sources=len(self.sync.sources))

    async def refresh_aggregates(self) -> None:
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

    async def stop(self, grace: float | None = None) -> None:
        """Stop syncing (in-flight syncs get `grace` seconds, then are cancelled), then the timers."""
        await self.sync.stop(self.settings.shutdown_grace.total_seconds() if grace is None else grace)
        task, self._aggregate_task = self._aggregate_task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await self.engine.stop()
