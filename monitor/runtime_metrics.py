"""Metrics of the daemon's own health: the store's backlog and write errors, task restarts, dropped events.

Read from live state on each scrape (a custom collector); labels are bounded by the code: `op` by the
kinds of store writes, `task` by the daemon's named loops.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from monitor.events import EventBus
    from monitor.store.sql import SqlStore
    from monitor.supervisor import Supervisor

__all__ = ["RuntimeCollector"]


class RuntimeCollector(Collector):
    """tthc_store_backlog, tthc_store_errors_total{op}, tthc_store_dropped_samples_total,
    tthc_store_last_commit_age_seconds, tthc_task_restarts_total{task}, tthc_tasks_down,
    tthc_events_dropped_total."""

    def __init__(self, store: SqlStore, supervisor: Supervisor, bus: EventBus) -> None:
        self.store = store
        self.supervisor = supervisor
        self.bus = bus

    def collect(self) -> Iterator[Metric]:
        store = self.store
        yield GaugeMetricFamily(
            "tthc_store_backlog",
            "Writes waiting in memory for the store: buffered probe results and durable facts being retried.",
            value=store.backlog,
        )
        errors = CounterMetricFamily(
            "tthc_store_errors", "Store write transactions that failed, by kind of write.", labels=["op"]
        )
        for op, count in sorted(store.facts.errors.items()):
            errors.add_metric([op], count)
        yield errors
        yield CounterMetricFamily(
            "tthc_store_dropped_samples",
            "Raw probe samples dropped because the backlog was full (rollups still count them).",
            value=store.dropped_samples,
        )
        age = store.facts.last_commit_age()
        if age is not None:
            yield GaugeMetricFamily(
                "tthc_store_last_commit_age_seconds", "Seconds since the last successful commit.", value=age
            )
        restarts = CounterMetricFamily(
            "tthc_task_restarts", "Restarts of a long-lived task after it crashed.", labels=["task"]
        )
        for task in sorted(self.supervisor.names):
            restarts.add_metric([task], self.supervisor.restarts[task])
        yield restarts
        yield GaugeMetricFamily(
            "tthc_tasks_down",
            "Long-lived tasks crashed and waiting for their restart.",
            value=len(self.supervisor.down()),
        )
        yield CounterMetricFamily(
            "tthc_events_dropped",
            "Events not kept because a subscriber's queue was full (never durable facts).",
            value=self.bus.dropped,
        )
