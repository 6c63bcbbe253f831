"""When the daemon was running: the time it watched, as opposed to time it was off.

The monitor being off is *unmonitored* time, never target downtime (a demo stopped for 20 minutes with an
incident open once dropped the portal's uptime to 15 %). So:
- Each daemon run is a row of `monitor_runs` (written by heartbeat.py): `started_at` at start,
  `last_seen_at` moved forward every heartbeat inside the store's batch transaction, `stopped_at` at a
  clean stop. A run killed with -9 ends at its last heartbeat, so at most one heartbeat interval of the
  off time is taken as watched.
- `running_spans` turns the runs into spans; `SqliteStore` intersects each target's monitored time with
  them. Every uptime figure (store, API, status page, SLA report) clips down time to monitored time in
  `availability`, so an incident open across a stop never counts the off time as down.
- Time before the first recorded run (a store written before heartbeats existed, or by tests without a
  daemon) keeps the sample-based derivation in `SqliteStore.monitored_spans`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.store.availability import Span, clip_spans, spans_seconds, subtract_spans
from monitor.store.engine import dialect_of, pick

__all__ = [
    "STALE_HEARTBEATS",
    "Coverage",
    "MonitorRun",
    "interrupted_at",
    "ms",
    "read_runs",
    "running_spans",
    "unmonitored_seconds",
]

# A run with no stopped_at whose last heartbeat is within this many intervals is still running (as seen
# from another process, e.g. the CLI); older, it crashed at its last heartbeat.
STALE_HEARTBEATS = 3

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def ms(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class MonitorRun:
    """One daemon run as recorded; `stopped_at` is None while running or after a crash."""

    id: int
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None
    heartbeat: timedelta

    def end(self, now: datetime, current_run: int | None) -> datetime:
        """Where the run's watched time ends: its clean stop, now while it runs, else its last heartbeat."""
        if self.stopped_at is not None:
            return self.stopped_at
        if self.id == current_run or now - self.last_seen_at <= self.heartbeat * STALE_HEARTBEATS:
            return now
        return self.last_seen_at


@dataclass(frozen=True, slots=True)
class Coverage:
    """One target over a window: the spans it was watched, and the seconds the monitor was not running."""

    monitored: list[Span]
    unmonitored_seconds: float


async def read_runs(reader: Any) -> list[MonitorRun]:
    """Every recorded run, oldest first (one row per daemon start: a handful a month)."""
    rows = await reader.execute_fetchall(
        "SELECT id, started_at, last_seen_at, stopped_at, heartbeat_ms FROM monitor_runs"
        " ORDER BY started_at, id"
    )
    return [
        MonitorRun(
            run_id,
            _at(started),
            _at(seen),
            None if stopped is None else _at(stopped),
            timedelta(milliseconds=heartbeat),
        )
        for run_id, started, seen, stopped, heartbeat in rows
    ]


def running_spans(
    runs: Sequence[MonitorRun], start: datetime, end: datetime, now: datetime, current_run: int | None
) -> list[Span]:
    """The parts of [start, end) the daemon was running. Before the first recorded run nothing is known
    from heartbeats, so that stretch is returned whole (the samples decide it, as before heartbeats)."""
    if not runs:
        return [Span(start, end)] if start < end else []
    spans = [Span(start, runs[0].started_at)]
    spans.extend(Span(run.started_at, run.end(now, current_run)) for run in runs)
    return clip_spans(spans, [Span(start, end)])


def unmonitored_seconds(window: Span, running: Sequence[Span], planned: Sequence[Span] = ()) -> float:
    """Seconds of `window` the daemon was not running, leaving out planned maintenance (neither up nor
    down, and not the monitor's doing)."""
    return spans_seconds(subtract_spans(subtract_spans([window], running), planned))


async def interrupted_at(
    reader: Any, target: str, started_at: datetime, before: datetime, current_run: int | None
) -> datetime:
    """Where an incident left open by an earlier run stops counting: the target's last stored probe
    before `before`, else the last heartbeat of an earlier run, never before the incident itself."""
    rows = await reader.execute_fetchall(
        "SELECT max(r.at) FROM probe_results AS r JOIN targets AS t ON t.id = r.target_id"
        " WHERE t.name = ? AND r.at < ?",
        (target, ms(before)),
    )
    last = rows[0][0] if rows else None
    if last is None:
        rows = await reader.execute_fetchall(
            "SELECT max(coalesce(stopped_at, last_seen_at)) FROM monitor_runs WHERE "
            + pick(dialect_of(reader), sqlite="id IS NOT ?", postgresql="id IS DISTINCT FROM ?::bigint"),
            (current_run,),
        )
        last = rows[0][0] if rows else None
    if last is None:
        return started_at
    return max(started_at, _at(last))
