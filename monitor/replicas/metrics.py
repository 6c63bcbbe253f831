"""Replica metrics, read from live state on each scrape: which member this is, how many are live, what
it owns and whether it leads. Labels are bounded: one member id and one engine per process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from monitor.replicas.node import ReplicaView

__all__ = ["ReplicaCollector"]


class ReplicaCollector(Collector):
    """tthc_replica_info{replica, engine}, tthc_replica_members, tthc_replica_owned_targets,
    tthc_replica_owned_sources, tthc_replica_leader."""

    def __init__(
        self, replica: ReplicaView, owned_targets: Callable[[], int], owned_sources: Callable[[], int]
    ) -> None:
        self.replica = replica
        self.owned_targets = owned_targets
        self.owned_sources = owned_sources

    def collect(self) -> Iterator[Metric]:
        replica = self.replica
        info = GaugeMetricFamily(
            "tthc_replica_info", "This replica's member id and store engine.", labels=["replica", "engine"]
        )
        info.add_metric([replica.id, replica.engine], 1)
        yield info
        yield GaugeMetricFamily(
            "tthc_replica_members",
            "Live members sharing the store, as this replica sees them (0 while it believes itself evicted).",
            value=len(replica.members),
        )
        yield GaugeMetricFamily(
            "tthc_replica_owned_targets", "Targets this replica probes.", value=self.owned_targets()
        )
        yield GaugeMetricFamily(
            "tthc_replica_owned_sources", "Dossier sources this replica syncs.", value=self.owned_sources()
        )
        yield GaugeMetricFamily(
            "tthc_replica_leader",
            "1 on the one replica that exports figures of the shared tables and sends digests and repeats.",
            value=1 if replica.is_leader else 0,
        )
