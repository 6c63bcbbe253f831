"""Prometheus metrics. Per-target series come from a collector that reads live state on each scrape
(like client_python's gc_collector), so a target removed by a reload vanishes from /metrics at once and
label sets stay bounded by the config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.model import Health

if TYPE_CHECKING:
    from monitor.scheduler import Scheduler

__all__ = ["UPTIME_WINDOWS", "Metrics", "TargetCollector"]

# Windows of tthc_target_uptime_ratio, in days.
UPTIME_WINDOWS: Mapping[str, int] = {"1d": 1, "7d": 7, "30d": 30}

_PHASES = ("dns", "connect", "tls", "processing", "transfer")


class TargetCollector(Collector):
    """blackbox_exporter-compatible probe series plus tthc_target_* series, one set per configured target."""

    def __init__(self, scheduler: Scheduler, uptime: Callable[[], Mapping[tuple[str, str], float]]) -> None:
        self._scheduler = scheduler
        self._uptime = uptime

    def collect(self) -> Iterable[Metric]:
        trackers = list(self._scheduler.trackers.values())
        targets = self._scheduler.targets
        success = GaugeMetricFamily("probe_success", "Whether the last probe succeeded.", labels=["target"])
        duration = GaugeMetricFamily(
            "probe_duration_seconds", "How long the last probe took, in seconds.", labels=["target"]
        )
        status = GaugeMetricFamily(
            "probe_http_status_code", "HTTP status code of the last probe's reply.", labels=["target"]
        )
        phases = GaugeMetricFamily(
            "probe_http_duration_seconds",
            "Duration of each phase of the last HTTP probe, in seconds.",
            labels=["target", "phase"],
        )
        cert_expiry = GaugeMetricFamily(
            "probe_ssl_earliest_cert_expiry",
            "Earliest expiry of the peer's TLS certificates, in unixtime.",
            labels=["target"],
        )
        up = GaugeMetricFamily("tthc_target_up", "1 when the target is UP or DEGRADED.", labels=["target"])
        degraded = GaugeMetricFamily(
            "tthc_target_degraded", "1 when the target is DEGRADED.", labels=["target"]
        )
        incidents = CounterMetricFamily(
            "tthc_target_incidents", "Incidents opened since the daemon started.", labels=["target"]
        )
        probes = CounterMetricFamily(
            "tthc_probes", "Probe runs by result (success, degraded, failure).", labels=["target", "result"]
        )
        for tracker in trackers:
            name = tracker.name
            for result, count in tracker.probes_by_result.items():
                probes.add_metric([name, result], count)
            incidents.add_metric([name], tracker.incidents_total)
            if tracker.health is not Health.UNKNOWN:
                up.add_metric([name], 1.0 if tracker.health in (Health.UP, Health.DEGRADED) else 0.0)
                degraded.add_metric([name], 1.0 if tracker.health is Health.DEGRADED else 0.0)
            outcome = tracker.last_outcome
            if outcome is None:
                continue
            success.add_metric([name], 1.0 if outcome.success else 0.0)
            duration.add_metric([name], tracker.last_duration)
            target = targets.get(name)
            is_http = target is not None and target.type == "http"
            if is_http:
                status.add_metric([name], float(outcome.status_code or 0))
                for phase in _PHASES:
                    phases.add_metric([name, phase], outcome.phases.get(phase, 0.0))
            if outcome.cert_expiry is not None:
                cert_expiry.add_metric([name], outcome.cert_expiry)
        uptime = GaugeMetricFamily(
            "tthc_target_uptime_ratio",
            "Share of the window the target was not in an incident (maintenance excluded).",
            labels=["target", "window"],
        )
        known = {tracker.name for tracker in trackers}
        for (name, window), ratio in sorted(self._uptime().items()):
            if name in known:
                uptime.add_metric([name, window], ratio)
        yield from (success, duration, status, phases, cert_expiry, up, degraded, incidents, probes, uptime)


class Metrics:
    """The daemon's registry and the few metrics that are updated in place rather than collected."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.probe_lateness = Histogram(
            "tthc_probe_lateness_seconds",
            "How late probes start compared with their schedule, in seconds.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.config_reload_successful = Gauge(
            "tthc_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            registry=self.registry,
        )
        self.config_reload_timestamp = Gauge(
            "tthc_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            registry=self.registry,
        )
        self.store_pending_writes = Gauge(
            "tthc_store_pending_writes",
            "Probe results waiting in memory for the store's batch writer.",
            registry=self.registry,
        )
        build = Gauge("tthc_build_info", "Version of tthc-monitor.", ["version"], registry=self.registry)
        build.labels(__version__).set(1)

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)
