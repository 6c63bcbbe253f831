"""Availability arithmetic shared by every uptime figure: the store's `uptime`, the status page's daily
bars and the monthly SLA report all call `availability`, so they cannot disagree on the same data.

Uptime is computed over *monitored* time only. The monitored spans are an input: the store derives them
(`SqliteStore.monitored_spans`, reports.py: from the first sample to the end of the hour of the last one,
clipped to the window and to now, intersected with the daemon's recorded runs, monitored.py), minus the
target's planned maintenance when the caller knows it (from the config,
`monitor.maintenance.planned_maintenance`). Time the monitor was not running is unmonitored, never down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "Availability",
    "Span",
    "availability",
    "clip_spans",
    "merge_spans",
    "spans_seconds",
    "subtract_spans",
]


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """A half-open stretch of time [start, end)."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())


@dataclass(frozen=True, slots=True)
class Availability:
    """Downtime inside monitored time; `uptime_ratio` is None when nothing was monitored."""

    monitored_seconds: float
    downtime_seconds: float

    @property
    def uptime_ratio(self) -> float | None:
        if self.monitored_seconds <= 0:
            return None
        return 1 - self.downtime_seconds / self.monitored_seconds


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with overlapping or touching spans joined, so overlapping incidents count once."""
    merged: list[Span] = []
    for span in sorted(spans):
        if span.end <= span.start:
            continue
        if merged and span.start <= merged[-1].end:
            if span.end > merged[-1].end:
                merged[-1] = Span(merged[-1].start, span.end)
        else:
            merged.append(span)
    return merged


def clip_spans(spans: Iterable[Span], limits: Iterable[Span]) -> list[Span]:
    """The parts of `spans` inside `limits` (both merged first), sorted: one sweep over both."""
    inside: list[Span] = []
    spans, limits = merge_spans(spans), merge_spans(limits)
    i = j = 0
    while i < len(spans) and j < len(limits):
        span, limit = spans[i], limits[j]
        start, end = max(span.start, limit.start), min(span.end, limit.end)
        if start < end:
            inside.append(Span(start, end))
        # Advance whichever ends first; merged inputs do not overlap among themselves.
        if span.end <= limit.end:
            i += 1
        else:
            j += 1
    return inside


def subtract_spans(spans: Iterable[Span], holes: Iterable[Span]) -> list[Span]:
    """The parts of `spans` outside every hole (e.g. monitored time minus planned maintenance)."""
    result: list[Span] = []
    holes = merge_spans(holes)
    for span in merge_spans(spans):
        start = span.start
        for hole in holes:
            if hole.end <= start or hole.start >= span.end:
                continue
            if hole.start > start:
                result.append(Span(start, hole.start))
            start = max(start, hole.end)
        if start < span.end:
            result.append(Span(start, span.end))
    return result


def spans_seconds(spans: Iterable[Span]) -> float:
    """Seconds covered, overlaps counted once."""
    return sum(span.seconds for span in merge_spans(spans))


def availability(monitored: Sequence[Span], down: Iterable[Span]) -> Availability:
    """Monitored seconds and the downtime inside them: down time outside monitored time is unknown, not
    down (the monitor was not watching), so it counts on neither side of the ratio."""
    return Availability(spans_seconds(monitored), spans_seconds(clip_spans(down, monitored)))
