"""The daemon: wires config, store, scheduler, metrics and the web server; reloads and shuts down.

Shutdown runs in three steps (as arq's worker and aiohttp's runner do): stop taking work, wait for
in-flight probes up to the grace period, cancel the rest; then the store flushes and closes.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from aiohttp import web

from alerts.alert_metrics import AlertMetrics
from alerts.service import AlertService
from monitor.config import Config, ConfigError, load_config, split_listen
from monitor.config_secrets import config_secrets
from monitor.dossiers.service import DossierReload, DossierService
from monitor.events import EventBus
from monitor.logging import register_secrets
from monitor.maintenance import planned_maintenance
from monitor.metrics import UPTIME_WINDOWS, Metrics, TargetSeries
from monitor.reload import RESTART_ONLY, ReloadOutcome, changed_sections
from monitor.replicas.metrics import ReplicaCollector
from monitor.replicas.node import Replica, replica_for
from monitor.replicas.target_states import SharedTargetStates, TargetState, local_states
from monitor.runtime_metrics import RuntimeCollector
from monitor.scheduler import Scheduler, Target
from monitor.store.engine import DB_ERRORS
from monitor.store.heartbeat import Heartbeat
from monitor.store.open import store_from_config
from monitor.supervisor import Supervisor
from monitor.web.app import create_web_app

__all__ = ["Daemon"]

log = structlog.get_logger("monitor.daemon")

UPTIME_REFRESH_SECONDS = 60.0
# After a failed re-share (the store failing half-way), the rest is tried again this much later.
REASSIGN_RETRY_SECONDS = 1.0


def _tune_runtime() -> None:
    """Keep long-lived start-up objects out of collections, collect young ones less often, and let the
    event loop win the GIL back sooner from the store's SQLite thread.

    Config, trackers and the store live as long as the daemon; walking them on every full collection
    cost up to 80 ms pauses at 1,000 targets and much of the CPU at 10,000 (bench/probes.py). A larger
    first threshold lets one-interval objects die young instead of being promoted and walked again.
    The default 5 ms switch interval showed as 5-7 ms loop stalls while the writer thread was busy
    (bench/store_growth.py).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    sys.setswitchinterval(0.0005)


class Daemon:
    """One running monitor. `start()` then `wait()`; or `run()` for the CLI with signal handling."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._clock = clock
        self.bus = EventBus()
        self.metrics = Metrics()
        # Every long-lived loop runs under it: a crash is logged, counted, restarted and shown by /readyz.
        self.supervisor = Supervisor()
        self.store = store_from_config(config.store, clock=clock, supervisor=self.supervisor)
        # On PostgreSQL a member sharing the work; on SQLite the sole process, owning everything.
        self.replica = replica_for(self.store, config.replicas, supervisor=self.supervisor, clock=clock)
        # Replicas: each member publishes its targets' live states here and the API reads them all.
        self._shared_states = (
            SharedTargetStates(self.store, self.replica.id) if isinstance(self.replica, Replica) else None
        )
        self._ownership_changed = asyncio.Event()
        self.metrics.register(RuntimeCollector(self.store, self.supervisor, self.bus))
        self.heartbeat = Heartbeat(self.store, config.store.heartbeat_interval, clock, self.supervisor)
        self.scheduler = Scheduler(
            store=self.store,
            bus=self.bus,
            zone=config.zone,
            max_concurrency=config.scheduler.max_concurrency,
            start_jitter=config.scheduler.start_jitter,
            observe_lateness=self.metrics.probe_lateness.observe,
            report_saturation=self.metrics.scheduler_saturation.set,
            count_held_back=self.metrics.probes_held_back.inc,
            clock=clock,
            supervisor=self.supervisor,
        )
        self.uptime: Mapping[tuple[str, str], float] = {}
        self.target_series = TargetSeries(self.scheduler, lambda: self.uptime)
        self.dossiers = DossierService(
            config, self.store, self.bus, clock, supervisor=self.supervisor, leader=self._leads
        )
        self.metrics.register(self.dossiers.collector)
        self.metrics.register(
            ReplicaCollector(self.replica, lambda: len(self.scheduler.targets), self._owned_source_count)
        )
        self.calendars = self.dossiers.calendars
        self.alerts = AlertService(
            config,
            self.store,
            self.bus,
            self.calendars,
            clock,
            metrics=AlertMetrics(self.metrics.registry, leader=self._leads),
            cert_expiry=self._cert_expiry,
            supervisor=self.supervisor,
            # Replicas: timers, reminders and digests fire on the leader only, from the shared tables.
            # Alone (SQLite) nothing is injected, so routing keeps its in-memory state and speed.
            leader=self._leads if self.shares_work else None,
        )
        self._runner: web.AppRunner | None = None
        self._background: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self.listen_address: tuple[str, int] | None = None

    def now(self) -> datetime:
        return self._clock()

    async def target_states(self) -> Mapping[str, TargetState]:
        """Every target's live state: this process's trackers, or with replicas the published ones."""
        if self._shared_states is None:
            return local_states(self.scheduler.trackers, self.scheduler.open_incident_id)
        return await self._shared_states.read(target.name for target in self.config.targets)

    async def _publish_target_states(self, shared: SharedTargetStates, interval: float) -> None:
        while True:
            try:
                states = local_states(self.scheduler.trackers, self.scheduler.open_incident_id)
                await shared.publish(states, self.now())
            except DB_ERRORS as exc:
                # The API shows the last published states meanwhile; the next round writes them all.
                log.warning("target_states_publish_failed", error=type(exc).__name__)
            await asyncio.sleep(interval)

    def _leads(self) -> bool:
        return self.replica.is_leader

    @property
    def shares_work(self) -> bool:
        """Whether replicas share this store (PostgreSQL): then each probes and syncs only its share."""
        return isinstance(self.replica, Replica)

    def _owned_targets(self, config: Config) -> list[Target]:
        # Targets and sources are shared out separately, so each member gets its share of both.
        mine = self.replica.owned(f"target:{target.name}" for target in config.targets)
        return [target for target in config.targets if f"target:{target.name}" in mine]

    def _owned_sources(self) -> set[str]:
        mine = self.replica.owned(f"source:{name}" for name in self.dossiers.sync.sources)
        return {name for name in self.dossiers.sync.sources if f"source:{name}" in mine}

    def _owned_source_count(self) -> int:
        sync = self.dossiers.sync
        return sum(1 for name in sync.sources if sync.runs(name))

    def _cert_expiry(self, target: str) -> float | None:
        tracker = self.scheduler.trackers.get(target)
        outcome = tracker.last_outcome if tracker else None
        return outcome.cert_expiry if outcome else None

    async def start(self) -> None:
        """Open the store, join the replicas, start every service and the web server.

        A step that fails undoes the ones before it (store connections and the writer thread, replica
        membership, heartbeat and keepalive thread, leadership connection, supervised tasks) before the
        error is raised: `stop()` runs each step on its own and skips nothing that was never started, so a
        caller that only sees the exception leaves nothing behind, and a later `stop()` does nothing.
        """
        try:
            await self._start_steps()
        except BaseException as exc:
            log.warning("daemon_start_failed", error=type(exc).__name__)
            await self.stop()
            raise

    async def _start_steps(self) -> None:
        register_secrets(config_secrets(self.config))
        await self.store.open()
        # Before the scheduler resumes open incidents: they end at the last probe before this run.
        await self.heartbeat.start()
        # Joined before anything is started: what this member owns follows from the live members.
        await self.replica.start()
        # Followed from the join on: a member joining or leaving while the rest starts (seconds on a busy
        # machine) is applied once ownership is followed below, not lost until the next change.
        self.replica.on_change(self._on_replica_change)
        # Alerts subscribe to the bus before anything can publish, so no event is missed.
        await self.alerts.start()
        replica, shared = self.replica, self._shared_states
        if isinstance(replica, Replica) and shared is not None:
            await self.dossiers.start(owned=self._owned_sources())
            owned = self._owned_targets(self.config)
            elsewhere = {target.name for target in self.config.targets} - {target.name for target in owned}
            await self.scheduler.start(owned, elsewhere=elsewhere)
            self._background.append(self.supervisor.spawn("replica-ownership", self._follow_ownership))
            self._background.append(
                self.supervisor.spawn(
                    "replica-target-states", lambda: self._publish_target_states(shared, replica.interval)
                )
            )
        else:
            await self.dossiers.start()
            await self.scheduler.start(self.config.targets)
        _tune_runtime()
        self.metrics.config_reload_successful.set(1)
        self.metrics.config_reload_timestamp.set(time.time())
        self._background.append(self.supervisor.spawn("uptime-refresh", self._refresh_uptime))
        host, port = split_listen(self.config.listen)
        self._runner = web.AppRunner(create_web_app(self), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        # The bound address, which differs from the configured one for port 0.
        bound = self._runner.addresses[0]
        self.listen_address = (bound[0], bound[1])
        if self.config.api.open_to_network(self.config.listen):
            # Only reachable with api.allow_remote_without_token: the operator said so, but say it again.
            log.warning(
                "api_open_without_token",
                listen=self.config.listen,
                hint="anyone who can reach this address reads dossier codes, units and people's ids",
            )
        log.info(
            "daemon_started",
            listen=f"{self.listen_address[0]}:{self.listen_address[1]}",
            targets=len(self.config.targets),
            store=self.store.engine.describe(),
        )

    @property
    def base_url(self) -> str:
        assert self.listen_address is not None
        host, port = self.listen_address
        return f"http://{host}:{port}"

    async def _on_replica_change(self) -> None:
        # Called from the heartbeat: the work happens in its own task, so heartbeats never wait on it.
        self._ownership_changed.set()

    async def _follow_ownership(self) -> None:
        leading = self.replica.is_leader
        members = set(self.replica.members)
        while True:
            await self._ownership_changed.wait()
            self._ownership_changed.clear()
            try:
                async with self._reload_lock:
                    await self._reassign()
                gone = members - set(self.replica.members)
                if gone and self.replica.is_leader:
                    # A member left or died: the alerts it recorded but had not routed, and its outage
                    # groups due now, are this leader's to send (alerts/service.py catch_up).
                    added = await self.alerts.catch_up()
                    log.info("replica_alerts_caught_up", gone=len(gone), added=added)
            except Exception:
                # The store failed half-way (what was applied stays applied): try the rest again.
                log.exception("replica_reassign_failed", member=self.replica.id)
                await asyncio.sleep(REASSIGN_RETRY_SECONDS)
                self._ownership_changed.set()
                continue
            members = set(self.replica.members)
            if self.replica.is_leader and not leading:
                # The figures of the shared tables are exported from now on: fresh, not from start-up.
                await self.dossiers.refresh_aggregates()
            leading = self.replica.is_leader

    async def _reassign(self) -> None:
        """Probe and sync exactly what this member owns now (after a membership or config change)."""
        owned = self._owned_targets(self.config)
        await self.scheduler.reassign(owned)
        await self.dossiers.reassign(self._owned_sources())
        log.info(
            "replica_ownership",
            member=self.replica.id,
            members=len(self.replica.members),
            targets=len(owned),
            sources=self._owned_source_count(),
            leader=self.replica.is_leader,
        )

    async def _refresh_uptime(self) -> None:
        while True:
            try:
                now = self.now()
                ratios: dict[tuple[str, str], float] = {}
                for window, days in UPTIME_WINDOWS.items():
                    start = now - timedelta(days=days)
                    targets = self.scheduler.targets.values()
                    planned = planned_maintenance(targets, start, now, self.config.zone)
                    for report in await self.store.uptime_all(start, now, planned):
                        if report.uptime_ratio is not None:
                            ratios[(report.target, window)] = report.uptime_ratio
                self.uptime = ratios
            except Exception:
                log.exception("uptime_refresh_failed")
            await asyncio.sleep(UPTIME_REFRESH_SECONDS)

    async def reload(self) -> ReloadOutcome:
        """Re-read the config file and apply it live (SIGHUP, `POST /api/v1/reload`): targets, people,
        rules, channels, calendars and dossier sources. All or nothing: the file is validated and every
        new object built before anything running changes; on any error the old config keeps running.
        `RESTART_ONLY` sections are logged as needing a restart and keep their running values."""
        async with self._reload_lock:
            outcome = await self._reload()
        if outcome.no_file:
            # Nothing was read: the running config is neither newer nor rejected.
            return outcome
        self.metrics.config_reload_successful.set(1 if outcome.ok else 0)
        if outcome.ok:
            self.metrics.config_reload_timestamp.set(time.time())
        return outcome

    async def _reload(self) -> ReloadOutcome:
        if self.config_path is None:
            return ReloadOutcome.failed(["the daemon was started without a config file"], no_file=True)
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config_reload_failed", path=str(self.config_path), errors=exc.loggable_errors)
            return ReloadOutcome.failed(exc.errors)
        changed, restart_needed = changed_sections(self.config, new)
        for field in restart_needed:
            log.warning("config_change_needs_restart", field=field)
        applied = new.model_copy(update={field: getattr(self.config, field) for field in RESTART_ONLY})
        # Phase 1: build everything new while the old objects keep running.
        dossiers: DossierReload | None = None
        try:
            dossiers = await self.dossiers.prepare_reload(applied)
            alerts = await self.alerts.prepare_reload(applied)
        except Exception as exc:
            if dossiers is not None:
                await self.dossiers.discard_reload(dossiers)
            section = "alerts" if dossiers is not None else "dossiers"
            errors = [f"{section}: {exc}"]
            log.error("config_reload_failed", path=str(self.config_path), errors=errors)
            return ReloadOutcome.failed(errors)
        # Phase 2: swap. Each step keeps what it does not change running (in-flight alerts included).
        register_secrets(config_secrets(applied))
        try:
            # Ownership depends only on the names and the live members, so a reload keeps each target
            # with its owner; a replica reloads its own share, and new sources are shared out below.
            await self.scheduler.reload(self._owned_targets(applied) if self.shares_work else applied.targets)
            await self.dossiers.apply_reload(dossiers)
            await self.alerts.apply_reload(alerts, self.config.scheduler.shutdown_grace.total_seconds())
        except Exception:
            # Every expected problem was caught while building: this is a bug. Keep serving.
            log.exception("config_reload_apply_failed", path=str(self.config_path))
            return ReloadOutcome.failed(
                ["applying the new config failed part-way; see the daemon's log"], apply_failed=True
            )
        self.config = applied
        if self.shares_work:
            await self._reassign()
        details = {
            "people_removed": list(alerts.removed_people),
            "channels_rebuilt": sorted(alerts.channels),
            "channels_removed": list(alerts.removed_channels),
            "sources_restarted": sorted(dossiers.sources),
            "sources_removed": list(dossiers.removed),
            "deadlines_replanned": dossiers.calendars_changed or dossiers.thresholds_changed,
        }
        log.info(
            "config_reloaded",
            path=str(self.config_path),
            targets=len(applied.targets),
            changed=list(changed),
            **details,
        )
        return ReloadOutcome(ok=True, changed=changed, restart_needed=restart_needed, details=details)

    async def stop(self) -> None:
        """Stop probing (in-flight probes get the grace period), flush the store, close the server.

        Never raises: each step runs even when one before it failed (logged), so the store is always
        closed and its threads joined.
        """
        if self._stopped.is_set():
            return
        log.info("daemon_stopping", in_flight=self.scheduler.in_flight)
        grace = self.config.scheduler.shutdown_grace.total_seconds()
        background, self._background = self._background, []

        async def cancel_background() -> None:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("scheduler", lambda: self.scheduler.stop(grace)),
            ("dossiers", lambda: self.dossiers.stop(grace)),
            # Last: alerts route what the others published while stopping, then the worker stops.
            ("alerts", lambda: self.alerts.stop(grace)),
            ("background", cancel_background),
            # A clean leave: the other members take this one's share at their next heartbeat.
            ("replica", self.replica.stop),
            # The run ends (stopped_at) before the store closes: uptime counts only running time.
            ("heartbeat", self.heartbeat.stop),
            ("store", self.store.close),
            ("supervisor", self.supervisor.stop),
        ]
        if self._runner is not None:
            steps.append(("web", self._runner.cleanup))
        for step, action in steps:
            try:
                await action()
            except Exception:
                log.exception("daemon_stop_step_failed", step=step)
        self.bus.close()
        self._stopped.set()
        log.info("daemon_stopped")

    async def wait(self) -> None:
        await self._stopped.wait()

    async def run(self) -> None:
        """Start, then serve until SIGTERM/SIGINT; SIGHUP reloads the config."""
        loop = asyncio.get_running_loop()
        # Keep references: the loop holds tasks only weakly.
        signal_tasks: set[asyncio.Task[object]] = set()

        def spawn(action: Callable[[], Awaitable[object]]) -> None:
            task = asyncio.create_task(action())
            signal_tasks.add(task)
            task.add_done_callback(signal_tasks.discard)

        await self.start()
        loop.add_signal_handler(signal.SIGTERM, spawn, self.stop)
        loop.add_signal_handler(signal.SIGINT, spawn, self.stop)
        loop.add_signal_handler(signal.SIGHUP, spawn, self.reload)
        try:
            await self.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
