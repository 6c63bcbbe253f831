"""Prometheus metrics. Per-target series are rendered from live state on each scrape (as a collector
like client_python's gc_collector would), so a target removed by a reload vanishes from /metrics at once
and label sets stay bounded by the config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.model import Health

if TYPE_CHECKING:
    from monitor.scheduler import Scheduler
    from monitor.state import TargetTracker

__all__ = ["UPTIME_WINDOWS", "Metrics", "TargetSeries"]

# Windows of tthc_target_uptime_ratio, in days.
UPTIME_WINDOWS: Mapping[str, int] = {"1d": 1, "7d": 7, "30d": 30}

_PHASES = ("dns", "connect", "tls", "processing", "transfer")


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    kind: str
    help: str


_FAMILIES = {
    "success": _Family("probe_success", "gauge", "Whether the last probe succeeded."),
    "duration": _Family("probe_duration_seconds", "gauge", "How long the last probe took, in seconds."),
    "status": _Family("probe_http_status_code", "gauge", "HTTP status code of the last probe's reply."),
    "phases": _Family(
        "probe_http_duration_seconds", "gauge", "Duration of each phase of the last HTTP probe, in seconds."
    ),
    "cert": _Family(
        "probe_ssl_earliest_cert_expiry",
        "gauge",
        "Earliest expiry of the peer's TLS certificates, in unixtime.",
    ),
    "up": _Family("tthc_target_up", "gauge", "1 when the target is UP or DEGRADED."),
    "degraded": _Family("tthc_target_degraded", "gauge", "1 when the target is DEGRADED."),
    "incidents": _Family(
        "tthc_target_incidents_total", "counter", "Incidents opened since the daemon started."
    ),
    "probes": _Family("tthc_probes_total", "counter", "Probe runs by result (success, degraded, failure)."),
    "uptime": _Family(
        "tthc_target_uptime_ratio",
        "gauge",
        "Share of the window the target was not in an incident (maintenance excluded).",
    ),
}


class TargetSeries:
    """The per-target families, rendered straight to exposition text.

    With thousands of targets, prometheus_client's sample objects made one scrape block the event loop
    for over 100 ms (bench/probes.py); plain f-strings over precomputed label text are ~10x cheaper, and
    `render` yields every `chunk` targets so the web handler can let probes run in between. Target names
    are restricted to `[A-Za-z0-9_.-]` by the config, so they need no escaping.
    """

    def __init__(
        self, scheduler: Scheduler, uptime: Callable[[], Mapping[tuple[str, str], float]], chunk: int = 250
    ) -> None:
        self._scheduler = scheduler
        self._uptime = uptime
        self._chunk = chunk

    def render(self) -> Iterator[str]:
        """Exposition text in pieces; every family's samples stay contiguous, as the format requires."""
        trackers = list(self._scheduler.trackers.values())
        targets = self._scheduler.targets
        for key, family in _FAMILIES.items():
            lines = [f"# HELP {family.name} {family.help}\n# TYPE {family.name} {family.kind}\n"]
            if key == "uptime":
                known = {tracker.name for tracker in trackers}
                for (name, window), ratio in sorted(self._uptime().items()):
                    if name in known:
                        lines.append(f'{family.name}{{target="{name}",window="{window}"}} {float(ratio)!r}\n')
                yield "".join(lines)
                continue
            for index, tracker in enumerate(trackers, 1):
                target = targets.get(tracker.name)
                if target is not None:
                    _render_sample(key, family.name, tracker, target.type == "http", lines)
                if index % self._chunk == 0:
                    yield "".join(lines)
                    lines = []
            yield "".join(lines)


def _render_sample(key: str, metric: str, tracker: TargetTracker, is_http: bool, lines: list[str]) -> None:
    label = f'target="{tracker.name}"'
    outcome = tracker.last_outcome
    if key == "probes":
        for result, count in tracker.probes_by_result.items():
            lines.append(f'{metric}{{{label},result="{result}"}} {float(count)!r}\n')
    elif key == "incidents":
        lines.append(f"{metric}{{{label}}} {float(tracker.incidents_total)!r}\n")
    elif key in ("up", "degraded"):
        if tracker.health is Health.UNKNOWN:
            return
        on = (
            tracker.health in (Health.UP, Health.DEGRADED)
            if key == "up"
            else tracker.health is Health.DEGRADED
        )
        lines.append(f"{metric}{{{label}}} {1.0 if on else 0.0}\n")
    elif outcome is None:
        return
    elif key == "success":
        lines.append(f"{metric}{{{label}}} {1.0 if outcome.success else 0.0}\n")
    elif key == "duration":
        lines.append(f"{metric}{{{label}}} {float(tracker.last_duration)!r}\n")
    elif key == "status" and is_http:
        lines.append(f"{metric}{{{label}}} {float(outcome.status_code or 0)!r}\n")
    elif key == "phases" and is_http:
        phases = outcome.phases
        for phase in _PHASES:
            lines.append(f'{metric}{{{label},phase="{phase}"}} {float(phases.get(phase, 0.0))!r}\n')
    elif key == "cert" and outcome.cert_expiry is not None:
        lines.append(f"{metric}{{{label}}} {float(outcome.cert_expiry)!r}\n")


class Metrics:
    """The daemon's registry and the few metrics that are updated in place rather than collected."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.probe_lateness = Histogram(
            "tthc_probe_lateness_seconds",
            "How late probes start compared with their schedule, in seconds.",
            # Up to minutes: an overloaded scheduler makes probes late by whole intervals.
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.02,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
                30.0,
                60.0,
                120.0,
            ),
            registry=self.registry,
        )
        self.scheduler_saturation = Gauge(
            "tthc_scheduler_saturation",
            "Sum of timeout/interval over targets divided by scheduler.max_concurrency; above 1 hanging"
            " targets alone could take every probe slot.",
            registry=self.registry,
        )
        self.probes_held_back = Counter(
            "tthc_probes_held_back",
            "Probes not run because their target's incident writes were waiting for the store.",
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
