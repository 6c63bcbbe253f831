"""Uptime reports from the rollups and incidents: a handful of queries whatever the number of targets.

Counts are exact to the minute while minute rollups are kept (to the hour after); latency percentiles and
the maximum come from hour histograms, so a window edge inside an hour brings that whole hour's latencies.
Downtime is the union of incident intervals, so overlapping incidents count once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from monitor.store import latency, packed
from monitor.store.base import UptimeReport
from monitor.store.buffer import HOUR, MINUTE, Rollup, floor, to_ms
from monitor.store.rollups import HOUR_PACKS, MINUTE_PACKS, Slicer, add_values

__all__ = ["InMemory", "from_ms", "uptime_reports"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = 86400


def from_ms(value: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=value)


@dataclass(frozen=True, slots=True)
class InMemory:
    """The writer's open minutes and hours, and the committed targets (name -> (id, first seen, health))."""

    minutes: Mapping[tuple[str, int], Rollup]
    hours: Mapping[tuple[str, int], Rollup]
    targets: Mapping[str, tuple[int, int, int | None]]


@dataclass(slots=True)
class Totals:
    """Rollup sums of one target over a report window."""

    probes: int = 0
    failures: int = 0
    degraded: int = 0
    maintenance: int = 0
    latency_max_us: int = 0
    histogram: dict[int, int] | None = None

    def add(
        self, probes: int, failures: int, degraded: int, maintenance: int, max_us: int, hist: dict[int, int]
    ) -> None:
        self.probes += probes
        self.failures += failures
        self.degraded += degraded
        self.maintenance += maintenance
        # Rounded up as packs store it, so a report reads the same before and after its hour is packed.
        self.latency_max_us = max(self.latency_max_us, packed.ceil_latency(max_us or 0))
        if hist:
            if self.histogram is None:
                self.histogram = {}
            for index, count in hist.items():
                self.histogram[index] = self.histogram.get(index, 0) + count


async def uptime_reports(
    reader: aiosqlite.Connection,
    memory: InMemory | None,
    now: datetime,
    start: datetime,
    end: datetime,
    target: str | None,
    minute_retention: timedelta,
) -> list[UptimeReport]:
    """Uptime of `target` (or of every target) over [start, end) clipped to [first data seen, now]:
    what is committed, plus `memory` (the writer's open minutes and hours) when given."""
    end_ms = to_ms(min(end, now))
    start_ms = to_ms(start)
    if target is None:
        rows = await reader.execute_fetchall("SELECT id, name, first_seen FROM targets ORDER BY name")
    else:
        rows = await reader.execute_fetchall(
            "SELECT id, name, first_seen FROM targets WHERE name = ?", (target,)
        )
    if not rows:
        return []
    target_id = rows[0][0] if target is not None else None
    totals = await _rollup_totals(reader, memory, start_ms, end_ms, to_ms(now - minute_retention), target_id)
    downtime = await _downtime(reader, start_ms, end_ms, target_id)
    reports = []
    for tid, name, first_seen in rows:
        window_start = min(max(start_ms, first_seen), end_ms)
        monitored = (end_ms - window_start) / 1000
        down_seconds = _clipped_downtime(downtime.get(tid), window_start, end_ms)
        count = _overlapping(downtime.get(tid), window_start, end_ms)
        total = totals.get(tid, Totals())
        histogram = total.histogram or {}
        max_latency = total.latency_max_us / 1_000_000 if total.latency_max_us else None
        reports.append(
            UptimeReport(
                target=name,
                start=from_ms(window_start),
                end=from_ms(end_ms),
                uptime_ratio=(1 - down_seconds / monitored) if monitored > 0 else None,
                downtime_seconds=down_seconds,
                incidents=count,
                probes=total.probes,
                failures=total.failures,
                degraded=total.degraded,
                latency_p50=latency.percentile(histogram, 0.50, max_latency),
                latency_p95=latency.percentile(histogram, 0.95, max_latency),
                maintenance=total.maintenance,
            )
        )
    return reports


async def _rollup_totals(
    reader: aiosqlite.Connection,
    memory: InMemory | None,
    start_ms: int,
    end_ms: int,
    minute_cutoff_ms: int,
    target_id: int | None,
) -> dict[int, Totals]:
    """Sums per target: whole days from day totals, whole hours from the packed hours, partial hours
    from the packed minutes while retained (else the whole hour).

    Counts are exact to the minute where minute rollups exist and to the hour elsewhere. Latency
    percentiles and the maximum always take whole hours: a partial hour at a window edge brings its
    whole hour's histogram (there are no per-minute histograms).
    """
    totals: dict[int, Totals] = {}
    if end_ms <= start_ms:
        return totals
    start_s = start_ms // 1000
    end_s = -(-end_ms // 1000)
    minute_cutoff = floor(minute_cutoff_ms // 1000, MINUTE) + MINUTE
    first_day, last_day = -(-start_s // _DAY) * _DAY, floor(end_s, _DAY)
    edges = [(start_s, first_day), (last_day, end_s)] if first_day <= last_day else [(start_s, end_s)]
    whole_hours: set[int] = set()
    partial: dict[int, tuple[int, int]] = {}  # hour -> minute range [low, high) read from minutes
    for low, high in edges:
        if low >= high:
            continue
        first_hour, last_hour = -(-low // HOUR) * HOUR, floor(high, HOUR)
        pieces = [(low, first_hour), (last_hour, high)] if first_hour <= last_hour else [(low, high)]
        whole_hours.update(range(first_hour, last_hour, HOUR))
        for piece_low, piece_high in pieces:
            if piece_low >= piece_high:
                continue
            if floor(piece_low, MINUTE) >= minute_cutoff:
                partial[floor(piece_low, HOUR)] = (floor(piece_low, MINUTE), piece_high)
            else:
                # Minute detail is gone here: count the whole hour the piece falls in.
                whole_hours.add(floor(piece_low, HOUR))
    target_sql, target_params = ("", []) if target_id is None else (" AND target_id = ?", [target_id])
    slicer = Slicer()

    def add_hour(tid: int, hour: int, entry: packed.Counts) -> None:
        """An hour entry not in a packed day: counts unless read from minutes, latency always."""
        if hour not in hour_histograms and not first_day <= hour < last_day:
            return
        total = totals.setdefault(tid, Totals())
        if hour not in partial:
            total.add(entry.probes, entry.failures, entry.degraded, entry.maintenance, 0, {})
        total.add(0, 0, 0, 0, entry.latency_max_us, entry.histogram)

    def add_minute(tid: int, minute: int, entry: packed.Counts) -> None:
        piece = partial.get(floor(minute, HOUR))
        if piece is not None and piece[0] <= minute < piece[1]:
            total = totals.setdefault(tid, Totals())
            total.add(entry.probes, entry.failures, entry.degraded, entry.maintenance, 0, {})

    if first_day < last_day:
        rows = await reader.execute_fetchall(
            "SELECT target_id, probes, failures, degraded, maintenance, latency_max_us, hours"
            f" FROM rollup_hour WHERE bucket >= ? AND bucket < ?{target_sql}",
            [first_day, last_day, *target_params],
        )
        for tid, probes, failures, degraded, maintenance, max_us, blob in rows:
            total = totals.setdefault(tid, Totals())
            total.add(probes, failures, degraded, maintenance, max_us, packed.day_histogram(blob))
            await slicer.tick()
    hour_histograms = whole_hours | set(partial)
    days = sorted({floor(hour, _DAY) for hour in hour_histograms})
    for day in days:
        rows = await reader.execute_fetchall(
            f"SELECT target_id, hours FROM rollup_hour WHERE bucket = ?{target_sql}",
            [day, *target_params],
        )
        for tid, blob in rows:
            total = totals.setdefault(tid, Totals())
            for offset, entry in packed.decode(blob, True, HOUR_PACKS.v1_unit_us).items():
                hour = day + offset * HOUR
                if hour not in hour_histograms:
                    continue
                if hour in whole_hours:
                    total.add(entry.probes, entry.failures, entry.degraded, entry.maintenance, 0, {})
                total.add(0, 0, 0, 0, entry.latency_max_us, entry.histogram)
            await slicer.tick()
    for hour, (low, high) in sorted(partial.items()):
        rows = await reader.execute_fetchall(
            f"SELECT target_id, minutes FROM rollup_minute WHERE bucket = ?{target_sql}",
            [hour, *target_params],
        )
        for tid, blob in rows:
            total = totals.setdefault(tid, Totals())
            for offset, entry in packed.decode(blob, False, MINUTE_PACKS.v1_unit_us).items():
                if low <= hour + offset * MINUTE < high:
                    total.add(entry.probes, entry.failures, entry.degraded, entry.maintenance, 0, {})
            await slicer.tick()
    # Closed entries of rows still open (rollup_open), then what is still in memory (open entries).
    rows = await reader.execute_fetchall(
        "SELECT size, bucket, target_id, probes, failures, degraded, maintenance, latency_sum_us,"
        " latency_max_us, histogram FROM rollup_open WHERE size IN (?, ?) AND bucket >= ?"
        f" AND bucket < ?{target_sql}",
        [MINUTE, HOUR, floor(start_s, HOUR), end_s, *target_params],
    )
    for size, bucket, tid, *values, hist in rows:
        entry = packed.Counts()
        add_values(entry, values, hist)
        (add_minute if size == MINUTE else add_hour)(tid, bucket, entry)
        await slicer.tick()
    if memory is not None:
        wanted = None if target_id is None else target_id
        for entries, add in ((memory.minutes, add_minute), (memory.hours, add_hour)):
            for (name, bucket), rollup in list(entries.items()):
                known = memory.targets.get(name)
                if known is None or (wanted is not None and known[0] != wanted):
                    continue
                if start_s - HOUR < bucket < end_s:
                    add(known[0], bucket, rollup)
                await slicer.tick()
    return totals


async def _downtime(
    reader: aiosqlite.Connection, start_ms: int, end_ms: int, target_id: int | None
) -> dict[int, list[tuple[int, int]]]:
    """Incident intervals per target overlapping the window; open ones end at the window end."""
    sql = (
        "SELECT target_id, started_at, ended_at FROM incidents"
        " WHERE started_at < ? AND (ended_at IS NULL OR ended_at > ?)"
    )
    params: list[Any] = [end_ms, start_ms]
    if target_id is not None:
        sql += " AND target_id = ?"
        params.append(target_id)
    intervals: dict[int, list[tuple[int, int]]] = {}
    for tid, started, ended in await reader.execute_fetchall(sql, params):
        intervals.setdefault(tid, []).append((started, end_ms if ended is None else ended))
    return intervals


def _merged(intervals: Iterable[tuple[int, int]], low: int, high: int) -> list[tuple[int, int]]:
    """Intervals clipped to [low, high] and merged, so overlapping incidents count once."""
    clipped = sorted((max(a, low), min(b, high)) for a, b in intervals if a < high and b > low)
    merged: list[tuple[int, int]] = []
    for a, b in clipped:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _clipped_downtime(intervals: list[tuple[int, int]] | None, low: int, high: int) -> float:
    if not intervals:
        return 0.0
    return sum(b - a for a, b in _merged(intervals, low, high)) / 1000


def _overlapping(intervals: list[tuple[int, int]] | None, low: int, high: int) -> int:
    if not intervals:
        return 0
    # A zero-length incident inside the window still happened.
    return sum(1 for a, b in intervals if a < high and (b > low or (a == b and a >= low)))
