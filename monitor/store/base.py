"""What the daemon stores and the narrow interface every store backend offers.

SQLite is the only backend today; PostgreSQL will follow, so callers depend on `Store` and on the
values here, never on SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from monitor.model import Health, ProbeOutcome
from monitor.store.availability import Span
from monitor.store.facts import WriteFacts

__all__ = ["Incident", "ProbeResult", "Store", "StoreError", "UptimeReport"]


class StoreError(Exception):
    """The store cannot do what was asked (missing or newer schema, read-only, unknown incident)."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe run as the scheduler saw it: `health` is the state after thresholds were applied."""

    target: str
    at: datetime
    duration: float
    outcome: ProbeOutcome
    health: Health
    in_maintenance: bool = False
    # The health changed on this result.
    changed: bool = False


@dataclass(frozen=True, slots=True)
class Incident:
    """A stretch of DOWN outside maintenance; `ended_at` is None while it is still open."""

    id: int
    target: str
    started_at: datetime
    ended_at: datetime | None
    reason: str | None
    detail: str = ""

    def duration_seconds(self, now: datetime) -> float:
        """Length so far: up to `ended_at`, or up to `now` while open."""
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True, slots=True)
class UptimeReport:
    """Availability of one target over the window actually monitored.

    `start`/`end` are the requested window clipped to [first data seen, now]. `failures` and `degraded`
    leave out results inside maintenance (counted in `maintenance` instead); latency percentiles are over
    successful probes only, estimated from a log-bucket histogram (within about 5 %).
    `unmonitored_seconds` is the part of the window the monitor itself was not running: neither up nor
    down, so it is out of `uptime_ratio` and shown apart.
    """

    target: str
    start: datetime
    end: datetime
    uptime_ratio: float | None
    downtime_seconds: float
    incidents: int
    probes: int
    failures: int
    degraded: int
    latency_p50: float | None
    latency_p95: float | None
    maintenance: int = 0
    unmonitored_seconds: float = 0.0

    @property
    def monitored_seconds(self) -> float:
        """From the first to the last monitored moment: gaps inside (the monitor off, planned maintenance)
        included, so this is an upper bound; the ratio uses the exact monitored spans."""
        return max(0.0, (self.end - self.start).total_seconds())


@runtime_checkable
class Store(Protocol):
    """Durable history: probe results, rollups, incidents, uptime, a small key/value table.

    `record` is synchronous and never waits (it only buffers); everything else is async.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def facts(self) -> WriteFacts: ...

    def record(self, result: ProbeResult) -> None: ...

    @property
    def pending_writes(self) -> int: ...

    async def flush(self) -> None: ...

    async def open_incident(
        self, target: str, started_at: datetime, reason: str | None, detail: str
    ) -> int: ...

    async def close_incident(self, incident_id: int, ended_at: datetime) -> None: ...

    async def open_incidents(self) -> list[Incident]: ...

    async def interrupted_at(self, target: str, started_at: datetime) -> datetime: ...

    async def reopen_incident(self, incident_id: int) -> None: ...

    async def incidents(
        self, since: datetime, until: datetime | None = None, target: str | None = None
    ) -> list[Incident]: ...

    async def uptime(
        self, target: str, start: datetime, end: datetime, planned: Mapping[str, Sequence[Span]] | None = None
    ) -> UptimeReport: ...

    async def uptime_all(
        self, start: datetime, end: datetime, planned: Mapping[str, Sequence[Span]] | None = None
    ) -> list[UptimeReport]: ...

    async def monitored_spans(
        self, start: datetime, end: datetime, planned: Mapping[str, Sequence[Span]] | None = None
    ) -> dict[str, list[Span]]: ...

    async def latest_health(self) -> dict[str, Health]: ...

    async def run_retention(self, now: datetime | None = None, batch: int = 5000) -> int: ...

    async def writable(self) -> bool: ...

    @property
    def backlog(self) -> int: ...

    async def get_value(self, key: str) -> str | None: ...

    async def set_value(self, key: str, value: str) -> None: ...
