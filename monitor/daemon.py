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
from monitor.dossiers.service import DossierService
from monitor.events import EventBus
from monitor.logging import register_secrets
from monitor.metrics import UPTIME_WINDOWS, Metrics, TargetSeries
from monitor.scheduler import Scheduler
from monitor.store import SqliteStore
from monitor.web.app import create_web_app

__all__ = ["Daemon", "config_secrets"]

log = structlog.get_logger("monitor.daemon")

UPTIME_REFRESH_SECONDS = 60.0

# Sections a reload does not apply (it logs that a restart is needed): targets reload live.
_RESTART_ONLY = ("listen", "store", "timezone", "calendars", "dossiers", "alerts")


def config_secrets(config: Config) -> list[str]:
    """Every secret value in the config, so logging can scrub it wherever it appears."""
    from pydantic import BaseModel, SecretStr

    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, SecretStr):
            found.append(node.get_secret_value())
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(config)
    return found


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
        self.store = SqliteStore.from_config(config.store, clock=clock)
        self.scheduler = Scheduler(
            store=self.store,
            bus=self.bus,
            zone=config.zone,
            max_concurrency=config.scheduler.max_concurrency,
            start_jitter=config.scheduler.start_jitter,
            observe_lateness=self.metrics.probe_lateness.observe,
            report_saturation=self.metrics.scheduler_saturation.set,
            clock=clock,
        )
        self.uptime: Mapping[tuple[str, str], float] = {}
        self.target_series = TargetSeries(self.scheduler, lambda: self.uptime)
        self.dossiers = DossierService(config, self.store, self.bus, clock)
        self.metrics.register(self.dossiers.collector)
        self.calendars = self.dossiers.calendars
        self.alerts = AlertService(
            config,
            self.store,
            self.bus,
            self.calendars,
            clock,
            metrics=AlertMetrics(self.metrics.registry),
            cert_expiry=self._cert_expiry,
        )
        self._runner: web.AppRunner | None = None
        self._background: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self.listen_address: tuple[str, int] | None = None

    def now(self) -> datetime:
        return self._clock()

    def _cert_expiry(self, target: str) -> float | None:
        tracker = self.scheduler.trackers.get(target)
        outcome = tracker.last_outcome if tracker else None
        return outcome.cert_expiry if outcome else None

    async def start(self) -> None:
        register_secrets(config_secrets(self.config))
        await self.store.open()
        # Alerts subscribe to the bus before anything can publish, so no event is missed.
        await self.alerts.start()
        await self.dossiers.start()
        await self.scheduler.start(self.config.targets)
        _tune_runtime()
        self.metrics.config_reload_successful.set(1)
        self.metrics.config_reload_timestamp.set(time.time())
        self._background.append(asyncio.create_task(self._refresh_uptime(), name="uptime-refresh"))
        host, port = split_listen(self.config.listen)
        self._runner = web.AppRunner(create_web_app(self), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        # The bound address, which differs from the configured one for port 0.
        bound = self._runner.addresses[0]
        self.listen_address = (bound[0], bound[1])
        log.info(
            "daemon_started",
            listen=f"{self.listen_address[0]}:{self.listen_address[1]}",
            targets=len(self.config.targets),
            store=str(self.config.store.path),
        )

    @property
    def base_url(self) -> str:
        assert self.listen_address is not None
        host, port = self.listen_address
        return f"http://{host}:{port}"

    async def _refresh_uptime(self) -> None:
        while True:
            try:
                now = self.now()
                ratios: dict[tuple[str, str], float] = {}
                for window, days in UPTIME_WINDOWS.items():
                    for report in await self.store.uptime_all(now - timedelta(days=days), now):
                        if report.uptime_ratio is not None:
                            ratios[(report.target, window)] = report.uptime_ratio
                self.uptime = ratios
            except Exception:
                log.exception("uptime_refresh_failed")
            await asyncio.sleep(UPTIME_REFRESH_SECONDS)

    async def reload(self) -> bool:
        """Re-read the config file; on any error keep running the old config."""
        if self.config_path is None:
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self.metrics.config_reload_successful.set(0)
            log.error("config_reload_failed", path=str(self.config_path), errors=exc.errors)
            return False
        kept = {field: getattr(self.config, field) for field in _RESTART_ONLY}
        for field, value in kept.items():
            if getattr(new, field) != value:
                log.warning("config_change_needs_restart", field=field)
        register_secrets(config_secrets(new))
        await self.scheduler.reload(new.targets)
        self.config = new.model_copy(update=kept)
        self.metrics.config_reload_successful.set(1)
        self.metrics.config_reload_timestamp.set(time.time())
        log.info("config_reloaded", path=str(self.config_path), targets=len(new.targets))
        return True

    async def stop(self) -> None:
        """Stop probing (in-flight probes get the grace period), flush the store, close the server."""
        if self._stopped.is_set():
            return
        log.info("daemon_stopping", in_flight=self.scheduler.in_flight)
        grace = self.config.scheduler.shutdown_grace.total_seconds()
        await self.scheduler.stop(grace)
        await self.dossiers.stop(grace)
        # Last: alerts route what the others published while stopping, then the worker stops.
        await self.alerts.stop(grace)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.store.close()
        if self._runner is not None:
            await self._runner.cleanup()
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
