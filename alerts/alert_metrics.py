"""Prometheus metrics of alert delivery.

Counters and the latency histogram are updated by the delivery worker as things happen; the gauges
(outbox backlog, channel up, Zalo token state) come from a collector that reads current state on each
scrape, so they are never stale and their label sets stay bounded by the config. Labels are channel
names, alert kinds and results only: never a phone number, a person or a secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.outbox import Outbox

__all__ = ["RESULTS", "AlertMetrics", "OutboxCollector", "OutboxSnapshot"]

# Values of the `result` label of tthc_alerts_total.
RESULTS = ("sent", "retried", "fallback", "failed", "duplicate")

# Event → accepted by the gateway: seconds for an immediate alert, minutes to hours when it waited for
# quiet hours to end or a gateway to come back.
_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)


@dataclass(slots=True)
class OutboxSnapshot:
    """The outbox gauges as last read from the store (refreshed by `AlertMetrics.refresh`)."""

    pending_by_channel: dict[str, int] = field(default_factory=dict)
    oldest_pending_age: float = 0.0
    oldest_deferred_age: float = 0.0
    refreshed_at: float = 0.0


class OutboxCollector(Collector):
    """Gauges read at scrape time: outbox backlog, circuit state per channel, Zalo token state."""

    def __init__(
        self,
        snapshot: OutboxSnapshot,
        channel_up: Callable[[], Mapping[str, bool]],
        channels: Callable[[], Mapping[str, object]],
        leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self._snapshot = snapshot
        self._channel_up = channel_up
        self._channels = channels
        self._leader = leader

    def collect(self) -> Iterable[Metric]:
        channels = self._channels()
        # The outbox is one table for every replica: its figures come from the leader alone, so a sum
        # over replicas counts each alert once.
        leads = self._leader()
        pending = GaugeMetricFamily(
            "tthc_outbox_pending", "Alerts waiting in the outbox (pending or in flight).", labels=["channel"]
        )
        counts = self._snapshot.pending_by_channel
        for name in sorted(set(channels) | set(counts)) if leads else ():
            # "" = the alert's plan is used up (about to be marked failed).
            pending.add_metric([name or "none"], float(counts.get(name, 0)))
        oldest = GaugeMetricFamily(
            "tthc_outbox_oldest_pending_age_seconds",
            "Age of the oldest alert still waiting to be sent, in seconds (0 when none waits): state=due"
            " since it became sendable, state=deferred since it was created and held for working or"
            " quiet hours.",
            labels=["state"],
        )
        # Deferred alerts apart, so "stuck" alerting (state="due") does not fire every night.
        if leads:
            oldest.add_metric(["due"], self._snapshot.oldest_pending_age)
            oldest.add_metric(["deferred"], self._snapshot.oldest_deferred_age)
        up = GaugeMetricFamily(
            "tthc_channel_up", "1 when the channel's circuit breaker is closed.", labels=["channel"]
        )
        for name, is_up in sorted(self._channel_up().items()):
            up.add_metric([name], 1.0 if is_up else 0.0)
        expiry = GaugeMetricFamily(
            "tthc_zalo_token_expiry_timestamp_seconds",
            "When the cached Zalo access token expires, in unixtime.",
            labels=["app_id"],
        )
        reauth = GaugeMetricFamily(
            "tthc_zalo_reauthorization_required",
            "1 when Zalo refused the refresh token and an operator must re-authorise the app.",
            labels=["app_id"],
        )
        seen: set[str] = set()
        for channel in channels.values():
            tokens = getattr(channel, "tokens", None)
            app_id = getattr(tokens, "app_id", None)
            if tokens is None or app_id is None or app_id in seen:
                continue
            seen.add(app_id)
            expires_at = getattr(tokens, "access_token_expires_at", None)
            if expires_at is not None:
                expiry.add_metric([str(app_id)], float(expires_at))
            reauth.add_metric(
                [str(app_id)], 1.0 if getattr(tokens, "reauthorization_required", False) else 0.0
            )
        yield from (pending, oldest, up, expiry, reauth)


class AlertMetrics:
    """The alert series on a registry (the daemon's). Hand it to `DeliveryWorker(metrics=...)`.

    `bind(worker)` connects the collector to a worker's channels and circuits (the worker binds itself
    when given `metrics=`); the worker calls `refresh()` from its loop about once a second to re-read the
    outbox backlog, so a scrape never touches the database.
    """

    def __init__(self, registry: CollectorRegistry, *, leader: Callable[[], bool] = lambda: True) -> None:
        self.registry = registry
        # Replicas: only the leader reads and exports the outbox backlog (one table for all members).
        self._leader = leader
        self.alerts_total = Counter(
            "tthc_alerts",
            "Alert delivery attempts by outcome (sent, retried, fallback, failed, duplicate).",
            ["kind", "channel", "result"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "tthc_alert_delivery_seconds",
            "From the event to the alert accepted by a gateway, in seconds.",
            buckets=_DELIVERY_BUCKETS,
            registry=registry,
        )
        self.sms_segments_total = Counter(
            "tthc_sms_segments", "SMS parts sent (what the gateway bills).", ["channel"], registry=registry
        )
        self.snapshot = OutboxSnapshot()
        self._channel_up: Callable[[], Mapping[str, bool]] = dict
        self._channels: Callable[[], Mapping[str, object]] = dict
        self._outbox: Outbox | None = None
        self._clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        registry.register(
            OutboxCollector(self.snapshot, lambda: self._channel_up(), lambda: self._channels(), leader)
        )

    def bind(self, worker: object) -> None:
        """Read channels, circuits and the outbox from a `DeliveryWorker`."""
        self._channel_up = worker.circuit_states  # type: ignore[attr-defined]
        self._channels = lambda: worker.channels  # type: ignore[attr-defined]
        self._outbox = worker.outbox  # type: ignore[attr-defined]
        self._clock = worker.now  # type: ignore[attr-defined]

    def alert(self, kind: str, channel: str, result: str) -> None:
        self.alerts_total.labels(kind, channel, result).inc()

    def delivered(self, seconds: float) -> None:
        self.delivery_seconds.observe(max(0.0, seconds))

    def sms_segments(self, channel: str, segments: int) -> None:
        self.sms_segments_total.labels(channel).inc(max(0, segments))

    async def refresh(self) -> None:
        """Re-read the outbox backlog gauges from the store."""
        if self._outbox is None or not self._leader():
            return
        self.snapshot.pending_by_channel = await self._outbox.pending_by_channel()
        self.snapshot.oldest_pending_age = await self._outbox.oldest_pending_age(self._clock())
        self.snapshot.oldest_deferred_age = await self._outbox.oldest_deferred_age(self._clock())
        self.snapshot.refreshed_at = time.time()
