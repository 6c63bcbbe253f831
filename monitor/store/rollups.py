"""The packed rollup tables and the helpers their writer and their readers share.

Rollups are packed (packed.py): one row per target per hour holding its minutes, one per target per UTC
day holding its hours. Entries of rows still open wait in `rollup_open`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.store import latency, packed

__all__ = [
    "HOUR_PACKS",
    "MINUTE_PACKS",
    "PACK_SPECS",
    "SLICE_SECONDS",
    "Pack",
    "PackSpec",
    "Slicer",
    "add_values",
]


@dataclass(frozen=True, slots=True)
class PackSpec:
    """One packed rollup table: rows of `row_size` seconds holding entries of `entry_size` seconds."""

    table: str
    blob: str
    row_size: int
    entry_size: int
    v1_unit_us: int  # latency unit of packs written before pack version 2
    histograms: bool


# Latencies are quantised as packed.py says (sums within 2.2 %, maxima rounded up by at most 4.4 %).
MINUTE_PACKS = PackSpec("rollup_minute", "minutes", 3600, 60, 1000, False)
HOUR_PACKS = PackSpec("rollup_hour", "hours", 86400, 3600, 100, True)
Pack = dict[int, packed.Counts]  # entry offset -> counts


PACK_SPECS = (MINUTE_PACKS, HOUR_PACKS)


# Longest stretch of rollup work on the event loop before letting probes run (probe lateness p99 < 20 ms).
SLICE_SECONDS = 0.001


class Slicer:
    """Yields to the event loop once a slice of CPU time is used up."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline = time.perf_counter() + SLICE_SECONDS

    async def tick(self) -> None:
        if time.perf_counter() >= self.deadline:
            await asyncio.sleep(0)
            self.deadline = time.perf_counter() + SLICE_SECONDS


def add_values(counts: packed.Counts, values: Sequence[int], histogram: bytes | None) -> None:
    """Add a `rollup_open` row (probes, failures, degraded, maintenance, sum, max) into counts."""
    probes, failures, degraded, maintenance, total, top = values
    counts.probes += probes
    counts.failures += failures
    counts.degraded += degraded
    counts.maintenance += maintenance
    counts.latency_sum_us += total
    counts.latency_max_us = max(counts.latency_max_us, top)
    if histogram:
        latency.decode(histogram, counts.histogram)
