"""The store's in-memory write buffer: probe results wait here, off the probe path, for the next flush.

`record()` is synchronous and cheap. A flush `take()`s a batch out and, if its transaction fails, puts it
back as a whole (`put_back`), in front of what arrived meanwhile, so the next flush retries it in order.
The buffer is bounded: past `raw_limit` rows waiting, new raw probe samples are dropped and counted
(`dropped_samples`); rollups (one entry per target per minute and hour) and health are still kept, so
uptime stays exact and no state change is lost from the counts. Durable facts (incidents, crossings,
alerts) never go through this buffer: their writers retry until committed (monitor/store/durable.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from monitor.model import FailureReason, Health
from monitor.store import latency, packed
from monitor.store.base import ProbeResult

__all__ = [
    "HEALTH_CODES",
    "HOUR",
    "MINUTE",
    "REASON_CODES",
    "Batch",
    "RawRow",
    "Rollup",
    "WriteBuffer",
    "floor",
    "to_ms",
]

# Stable codes stored in probe_results; append new ones, never renumber.
HEALTH_CODES: dict[Health, int] = {Health.UNKNOWN: 0, Health.UP: 1, Health.DEGRADED: 2, Health.DOWN: 3}
REASON_CODES: dict[FailureReason, int] = {
    FailureReason.TIMEOUT: 1,
    FailureReason.REFUSED: 2,
    FailureReason.DNS: 3,
    FailureReason.TLS: 4,
    FailureReason.CERT_EXPIRING: 5,
    FailureReason.STATUS: 6,
    FailureReason.BODY_MISMATCH: 7,
    FailureReason.SLOW: 8,
    FailureReason.ERROR: 9,
}

MINUTE = 60
HOUR = 3600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

RawRow = tuple[str, int, int, int, int, int, int, int, int | None, int | None]


def to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone aware")
    return (value - _EPOCH) // _MS


def floor(value: int, size: int) -> int:
    return value - value % size


def _reason_code(reason: FailureReason | None) -> int | None:
    if reason is None:
        return None
    # A reason added to the model without a code here is still stored, as the generic one.
    return REASON_CODES.get(reason, REASON_CODES[FailureReason.ERROR])


class Rollup(packed.Counts):
    """Running totals of one target over one minute or hour (mutable: updated on every record)."""

    __slots__ = ()

    def add(self, result: ProbeResult, duration_us: int, bucket: int) -> None:
        self.probes += 1
        outcome = result.outcome
        if result.in_maintenance:
            self.maintenance += 1
        elif not outcome.success:
            self.failures += 1
        elif outcome.degraded:
            self.degraded += 1
        if outcome.success:
            # A timeout's "latency" is the timeout itself; it would only blur the percentiles.
            self.latency_sum_us += duration_us
            self.latency_max_us = max(self.latency_max_us, duration_us)
            self.histogram[bucket] = self.histogram.get(bucket, 0) + 1


@dataclass(slots=True)
class Batch:
    """What one flush takes out of memory; put back as a whole if the transaction fails.

    `minutes` and `hours` hold the closed entries keyed by (target, bucket start in epoch seconds).
    """

    raw: list[RawRow]
    minutes: dict[tuple[str, int], Rollup]
    hours: dict[tuple[str, int], Rollup]
    health: dict[str, int]
    first_seen: dict[str, int]
    count: int


class WriteBuffer:
    """Probe results not yet committed: raw rows, open rollup entries, latest health per target."""

    def __init__(self, sample_interval: timedelta, raw_limit: int) -> None:
        self.raw_limit = raw_limit
        self.dropped_samples = 0
        self._sample_ms = int(sample_interval / _MS)
        self.raw: list[RawRow] = []
        self.minutes: dict[tuple[str, int], Rollup] = {}
        self.hours: dict[tuple[str, int], Rollup] = {}
        self.health: dict[str, int] = {}
        self.first_seen: dict[str, int] = {}
        self.pending = 0
        self.inflight = 0
        self._last_row_ms: dict[str, int] = {}
        self.last_health: dict[str, Health] = {}

    @property
    def backlog(self) -> int:
        """Results recorded but not yet committed (grows while the database is slow or locked)."""
        return self.pending + self.inflight

    def record(self, result: ProbeResult) -> None:
        """Buffer one result. Synchronous and cheap: the probe path must never wait on the disk."""
        name = result.target
        at_ms = to_ms(result.at)
        at_s = at_ms // 1000
        duration_us = max(0, round(result.duration * 1_000_000))
        latency_bucket = latency.bucket_index(result.duration)
        for table, size in ((self.minutes, MINUTE), (self.hours, HOUR)):
            key = (name, floor(at_s, size))
            rollup = table.get(key)
            if rollup is None:
                rollup = table[key] = Rollup()
            rollup.add(result, duration_us, latency_bucket)
        outcome = result.outcome
        health_code = HEALTH_CODES[result.health]
        last_row = self._last_row_ms.get(name)
        interesting = not outcome.success or outcome.degraded or result.changed or result.in_maintenance
        if interesting or last_row is None or at_ms - last_row >= self._sample_ms:
            if len(self.raw) >= self.raw_limit:
                # The store has been unavailable for long: keep memory bounded. The rollups above
                # still count this result, so only its individual row is gone.
                self.dropped_samples += 1
            else:
                self.raw.append(
                    (
                        name,
                        at_ms,
                        duration_us,
                        health_code,
                        int(outcome.success),
                        int(outcome.degraded),
                        int(result.in_maintenance),
                        int(result.changed),
                        _reason_code(outcome.reason),
                        outcome.status_code,
                    )
                )
                self._last_row_ms[name] = at_ms
        self.last_health[name] = result.health
        self.health[name] = health_code
        first = self.first_seen.get(name)
        if first is None or at_ms < first:
            self.first_seen[name] = at_ms
        self.pending += 1

    def take(self, now_s: int, force: bool, rows_due: bool) -> Batch | None:
        """The next batch: everything recorded, plus the rollup entries whose minute or hour is over
        (all of them when `force`); None when there is nothing to write and no packed row is due."""
        minutes = self._closed(self.minutes, MINUTE, now_s, force)
        hours = self._closed(self.hours, HOUR, now_s, force)
        if force:
            self.minutes, self.hours = {}, {}
        if not (self.pending or rows_due or minutes or hours):
            return None
        batch = Batch(self.raw, minutes, hours, self.health, self.first_seen, self.pending)
        self.raw, self.health, self.first_seen = [], {}, {}
        self.inflight, self.pending = self.pending, 0
        return batch

    @staticmethod
    def _closed(
        table: dict[tuple[str, int], Rollup], size: int, now_s: int, force: bool
    ) -> dict[tuple[str, int], Rollup]:
        if force:
            return table
        closed = {key: rollup for key, rollup in table.items() if key[1] + size <= now_s}
        for key in closed:
            del table[key]
        return closed

    def committed(self) -> None:
        self.inflight = 0

    def put_back(self, batch: Batch) -> None:
        """Return a failed batch in front of what arrived since, without copying the whole backlog."""
        self.inflight = 0
        # Extending the old list by the (few) rows recorded during the attempt costs only those rows;
        # `batch.raw + self.raw` copied the whole backlog on every failed retry.
        batch.raw.extend(self.raw)
        self.raw = batch.raw
        if len(self.raw) > self.raw_limit:
            excess = len(self.raw) - self.raw_limit
            self.dropped_samples += excess
            del self.raw[self.raw_limit :]
        for table, entries in ((self.minutes, batch.minutes), (self.hours, batch.hours)):
            for key, rollup in entries.items():
                if key in table:
                    rollup.merge(table[key])
                table[key] = rollup
        self.health = batch.health | self.health
        for name, first in batch.first_seen.items():
            self.first_seen[name] = min(first, self.first_seen.get(name, first))
        self.pending += batch.count
