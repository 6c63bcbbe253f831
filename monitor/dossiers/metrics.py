"""Dossier metrics: a custom collector yielding families from current aggregates on each scrape.

Like client_python's gc_collector, nothing is kept as labelled children: every scrape reads the engine's
state counts, the sync manager's per-source totals and the DB aggregates a background task refreshes
(`DossierAggregates.refresh`), so the scrape itself never touches the database. Labels stay bounded:
unit, state, source, timeliness, reason, threshold, and procedure only when enabled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.dossiers.store import DossierStore

if TYPE_CHECKING:
    from monitor.dossiers.engine import DeadlineEngine
    from monitor.dossiers.sync import SyncManager

__all__ = ["DossierAggregates", "DossierCollector"]


class DossierAggregates:
    """DB-backed figures for /metrics, recomputed by a background task rather than per scrape."""

    def __init__(self) -> None:
        # (unit, timeliness[, procedure]) -> finished dossiers ever stored.
        self.finished: dict[tuple[str, ...], int] = {}
        self.on_time_ratio: dict[str, float] = {}
        self.postal_ratio: dict[str, float] = {}
        self.overdue_during_outage: dict[str, int] = {}
        self.refreshed_at: datetime | None = None

    async def refresh(
        self, dossier_store: DossierStore, now: datetime, since: datetime, *, procedure: bool = False
    ) -> None:
        finished = await dossier_store.finished_totals(procedure)
        summaries = await dossier_store.unit_summaries(now, since)
        outage = await dossier_store.overdue_outage_totals()
        self.finished = finished
        self.on_time_ratio = {s.unit_code: r for s in summaries if (r := s.on_time_ratio) is not None}
        self.postal_ratio = {s.unit_code: r for s in summaries if (r := s.postal_ratio) is not None}
        self.overdue_during_outage = outage
        self.refreshed_at = now


# What a replica that does not lead exports of the shared tables' figures: nothing.
_NOTHING = DossierAggregates()


class DossierCollector(Collector):
    """tthc_dossier* families; see the module docstring."""

    def __init__(
        self,
        engine: DeadlineEngine,
        sync: SyncManager | None,
        aggregates: DossierAggregates,
        *,
        procedure_label: bool = False,
        leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.engine = engine
        # Replicas: figures of the shared tables come from the leader only, so sums count them once.
        self.leader = leader
        self.sync = sync
        self.aggregates = aggregates
        self.procedure_label = procedure_label

    def collect(self) -> Iterable[Metric]:
        with_procedure = self.procedure_label
        aggregates = self.aggregates if self.leader() else _NOTHING
        extra = ["procedure"] if with_procedure else []
        open_family = GaugeMetricFamily(
            "tthc_dossiers_open",
            "Open dossiers by deadline state (on_track, due_soon, due_today, overdue, paused).",
            labels=["unit", *extra, "state"],
        )
        counts: Counter[tuple[str, ...]] = Counter()
        for (unit, procedure, state), count in list(self.engine.state_counts.items()):
            counts[(unit, procedure, state) if with_procedure else (unit, state)] += count
        for labels, count in sorted(counts.items()):
            open_family.add_metric(list(labels), count)
        yield open_family

        finished = CounterMetricFamily(
            "tthc_dossiers_finished",
            "Returned dossiers by timeliness (early, on_time, late), as stored.",
            labels=["unit", "timeliness", *extra],
        )
        totals: Counter[tuple[str, ...]] = Counter()
        for key, count in aggregates.finished.items():
            totals[key if with_procedure else key[:2]] += count
        for labels, count in sorted(totals.items()):
            finished.add_metric(list(labels), count)
        yield finished

        on_time = GaugeMetricFamily(
            "tthc_dossier_on_time_ratio",
            "Share of dossiers returned early or on time over the configured window.",
            labels=["unit"],
        )
        for unit, ratio in sorted(aggregates.on_time_ratio.items()):
            on_time.add_metric([unit], ratio)
        yield on_time

        postal = GaugeMetricFamily(
            "tthc_dossiers_via_postal_ratio",
            "Share of dossiers returned by post over the configured window.",
            labels=["unit"],
        )
        for unit, ratio in sorted(aggregates.postal_ratio.items()):
            postal.add_metric([unit], ratio)
        yield postal

        outage = CounterMetricFamily(
            "tthc_dossiers_overdue_during_outage",
            "Dossiers turned overdue with a dossier-system incident in the window before their due time.",
            labels=["unit"],
        )
        for unit, count in sorted(aggregates.overdue_during_outage.items()):
            outage.add_metric([unit], count)
        yield outage

        crossings = CounterMetricFamily(
            "tthc_dossier_crossings",
            "Threshold crossings published since the daemon started, by threshold.",
            labels=["threshold"],
        )
        for threshold, count in sorted(self.engine.crossings_published.items()):
            crossings.add_metric([threshold], count)
        yield crossings

        last_success = GaugeMetricFamily(
            "tthc_dossier_sync_last_success_timestamp_seconds",
            "When the last successful sync of each source finished, in unixtime.",
            labels=["source"],
        )
        duration = GaugeMetricFamily(
            "tthc_dossier_sync_duration_seconds",
            "How long the last successful sync of each source took, in seconds.",
            labels=["source"],
        )
        failures = CounterMetricFamily(
            "tthc_dossier_sync_failures", "Failed syncs by source and reason.", labels=["source", "reason"]
        )
        rejected = CounterMetricFamily(
            "tthc_dossier_records_rejected",
            "Records skipped by validation (or duplicated in one listing), by source and reason.",
            labels=["source", "reason"],
        )
        if self.sync is not None:
            for name, stats in sorted(self.sync.stats.items()):
                if not self.sync.runs(name):
                    continue  # another replica syncs it and exports its series
                if stats.last_success_at is not None:
                    last_success.add_metric([name], stats.last_success_at.timestamp())
                if stats.last_duration is not None:
                    duration.add_metric([name], stats.last_duration)
                for reason, count in sorted(stats.failures.items()):
                    failures.add_metric([name, reason], count)
                for reason, count in sorted(stats.rejected.items()):
                    rejected.add_metric([name, reason], count)
        yield from (last_success, duration, failures, rejected)
