"""Uptime reports from the rollups and incidents: a handful of queries whatever the number of targets.

Counts are exact to the minute while minute rollups are kept (to the hour after); latency percentiles and
the maximum come from hour histograms, so a window edge inside an hour brings that whole hour's latencies.
Downtime is the union of incident intervals within the monitored spans (availability.py), so overlapping
incidents count once and planned maintenance is neither up nor down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.store import latency, live, monitored, packed
from monitor.store.availability import Span, availability, clip_spans, subtract_spans
from monitor.store.base import UptimeReport
from monitor.store.buffer import HOUR, MINUTE, Rollup, floor, to_ms
from monitor.store.engine import dialect_of, pick
from monitor.store.rollups import HOUR_PACKS, MINUTE_PACKS, Slicer, add_values

__all__ = ["InMemory", "Planned", "coverage", "from_ms", "uptime_reports"]

# Per target, planned maintenance in the window: left out of monitored time.
Planned = Mapping[str, Sequence[Span]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = 86400

# Per target, its newest packed day before ?: one index seek each (SQLite by rowid, PostgreSQL LATERAL).
_LAST_DAY_SQLITE = (
    "SELECT t.id, r.bucket, r.hours FROM targets AS t JOIN rollup_hour AS r ON r.rowid ="
    " (SELECT rowid FROM rollup_hour WHERE target_id = t.id AND bucket < ? ORDER BY bucket DESC LIMIT 1)"
)
_LAST_DAY_POSTGRESQL = (
    "SELECT t.id, r.bucket, r.hours FROM targets AS t CROSS JOIN LATERAL (SELECT bucket, hours"
    " FROM rollup_hour WHERE target_id = t.id AND bucket < ? ORDER BY bucket DESC LIMIT 1) AS r"
)


def from_ms(value: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=value)


@dataclass(frozen=True, slots=True)
class InMemory:
    """The writer's open minutes and hours, the committed targets (name -> (id, first seen, health)) and
    the daemon run it records (heartbeat.py), whose watched time extends to now."""

    minutes: Mapping[tuple[str, int], Rollup]
    hours: Mapping[tuple[str, int], Rollup]
    targets: Mapping[str, tuple[int, int, int | None]]
    current_run: int | None = None


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
    reader: Any,
    memory: InMemory | None,
    now: datetime,
    start: datetime,
    end: datetime,
    target: str | None,
    minute_retention: timedelta,
    planned: Planned | None = None,
) -> list[UptimeReport]:
    """Uptime of `target` (or of every target) over its monitored time in [start, end): what is committed,
    plus `memory` (the writer's open minutes and hours) when given."""
    if target is None:
        rows = await reader.execute_fetchall("SELECT id, name, first_seen FROM targets ORDER BY name")
    else:
        rows = await reader.execute_fetchall(
            "SELECT id, name, first_seen FROM targets WHERE name = ?", (target,)
        )
    if not rows:
        return []
    target_id = rows[0][0] if target is not None else None
    covered = await _coverage(reader, memory, now, rows, start, end, target_id, planned)
    end_ms = to_ms(min(end, now))
    start_ms = to_ms(start)
    totals = await _rollup_totals(
        reader, memory, start_ms, end_ms, to_ms(now - minute_retention), target_id, to_ms(now)
    )
    downtime = await _downtime(reader, start_ms, end_ms, target_id)
    reports = []
    for tid, name, _first_seen in rows:
        monitored = covered[name].monitored
        window_start = to_ms(monitored[0].start) if monitored else end_ms
        window_end = to_ms(monitored[-1].end) if monitored else end_ms
        down = [Span(from_ms(a), from_ms(b)) for a, b in downtime.get(tid, ())]
        figures = availability(monitored, down)
        total = totals.get(tid, Totals())
        histogram = total.histogram or {}
        max_latency = total.latency_max_us / 1_000_000 if total.latency_max_us else None
        reports.append(
            UptimeReport(
                target=name,
                start=from_ms(window_start),
                end=from_ms(window_end),
                uptime_ratio=figures.uptime_ratio,
                downtime_seconds=figures.downtime_seconds,
                incidents=_overlapping(downtime.get(tid), window_start, window_end),
                probes=total.probes,
                failures=total.failures,
                degraded=total.degraded,
                latency_p50=latency.percentile(histogram, 0.50, max_latency),
                latency_p95=latency.percentile(histogram, 0.95, max_latency),
                maintenance=total.maintenance,
                unmonitored_seconds=covered[name].unmonitored_seconds,
            )
        )
    return reports


async def coverage(
    reader: Any,
    memory: InMemory | None,
    now: datetime,
    start: datetime,
    end: datetime,
    planned: Planned | None = None,
) -> dict[str, monitored.Coverage]:
    """Per known target, the parts of [start, end) the monitor was watching it (see availability.py),
    and the seconds of the window the monitor was not running.

    Today: from its first stored sample (or incident) to the end of the hour of its last sample before
    the window's end, clipped to the window and to now; a target with incidents but no samples counts
    up to now. `planned` (per target, its maintenance in the window, from the config) is left out:
    planned outages are neither up nor down.
    Within that, only the time the daemon was running counts (its heartbeats, monitored.py): the monitor
    being off is unmonitored time, neither up nor down. `uptime`, the status page and the SLA report all
    read monitored time from here.
    """
    rows = await reader.execute_fetchall("SELECT id, name, first_seen FROM targets ORDER BY name")
    return await _coverage(reader, memory, now, rows, start, end, None, planned)


async def _coverage(
    reader: Any,
    memory: InMemory | None,
    now: datetime,
    rows: Iterable[Sequence[Any]],
    start: datetime,
    end: datetime,
    target_id: int | None,
    planned: Planned | None,
) -> dict[str, monitored.Coverage]:
    last_hours = await _last_sample_hours(reader, memory, min(end, now), target_id, now)
    current_run = memory.current_run if memory is not None else None
    runs = await monitored.read_runs(reader)
    running = monitored.running_spans(runs, start, min(end, now), now, current_run)
    covered: dict[str, monitored.Coverage] = {}
    for tid, name, first_seen in rows:
        low = max(start, from_ms(first_seen))
        high = min(end, now)
        holes = planned[name] if planned and name in planned else ()
        window = Span(low, high) if low < high else None
        last_hour = last_hours.get(tid)
        if last_hour is not None:
            high = min(high, from_ms((last_hour + HOUR) * 1000))
        watched = clip_spans([Span(low, high)], running) if low < high else []
        covered[name] = monitored.Coverage(
            subtract_spans(watched, holes) if holes else watched,
            monitored.unmonitored_seconds(window, running, holes) if window else 0.0,
        )
    return covered


async def _last_sample_hours(
    reader: Any, memory: InMemory | None, end: datetime, target_id: int | None, now: datetime
) -> dict[int, int]:
    """Per target id, the epoch second of the latest hour before `end` holding any result: from
    memory, the hours waiting in rollup_open, else the newest packed day before `end` (one index seek
    per target; a second only when that day's results all fall at or after `end`)."""
    end_s = -(-to_ms(end) // 1000)
    last: dict[int, int] = {}
    target_sql, params = ("", [end_s]) if target_id is None else (" WHERE t.id = ?", [end_s, target_id])
    rows = await reader.execute_fetchall(
        pick(dialect_of(reader), sqlite=_LAST_DAY_SQLITE, postgresql=_LAST_DAY_POSTGRESQL) + target_sql,
        params,
    )
    for tid, day, blob in rows:
        while True:
            hours = [day + offset * HOUR for offset in packed.decode(blob, True, HOUR_PACKS.v1_unit_us)]
            before = [hour for hour in hours if hour < end_s]
            if before:
                last[tid] = max(before)
                break
            older = await reader.execute_fetchall(
                "SELECT bucket, hours FROM rollup_hour WHERE target_id = ? AND bucket < ?"
                " ORDER BY bucket DESC LIMIT 1",
                (tid, day),
            )
            if not older:
                break
            day, blob = older[0]
    open_sql = "" if target_id is None else " AND target_id = ?"
    rows = await reader.execute_fetchall(
        f"SELECT target_id, max(bucket) FROM rollup_open WHERE size = ? AND bucket < ?{open_sql}"
        " GROUP BY target_id",
        [HOUR, end_s, *([] if target_id is None else [target_id])],
    )
    for tid, hour in rows:
        last[tid] = max(hour, last.get(tid, hour))
    if memory is not None:
        for name, hour in list(memory.hours):
            known = memory.targets.get(name)
            if known is not None and hour < end_s and (target_id is None or known[0] == target_id):
                last[known[0]] = max(hour, last.get(known[0], hour))
    else:
        # Another process (the CLI): the daemon's open hours as of its last heartbeat (live.py).
        live_rows = await live.read_live(reader, 0, end_s, target_id, to_ms(now))
        for size, hour, tid, _counts in live_rows:
            if size == HOUR:
                last[tid] = max(hour, last.get(tid, hour))
    return last


async def _rollup_totals(
    reader: Any,
    memory: InMemory | None,
    start_ms: int,
    end_ms: int,
    minute_cutoff_ms: int,
    target_id: int | None,
    now_ms: int,
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
    else:
        # Another process (the CLI): the daemon's memory as of its last heartbeat (live.py).
        live_rows = await live.read_live(reader, start_s - HOUR, end_s, target_id, now_ms)
        for size, bucket, tid, counts in live_rows:
            (add_minute if size == MINUTE else add_hour)(tid, bucket, counts)
    return totals


async def _downtime(
    reader: Any, start_ms: int, end_ms: int, target_id: int | None
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


def _overlapping(intervals: list[tuple[int, int]] | None, low: int, high: int) -> int:
    if not intervals:
        return 0
    # A zero-length incident inside the window still happened.
    return sum(1 for a, b in intervals if a < high and (b > low or (a == b and a >= low)))
