"""Packed rollup rows: the non-empty minutes of an hour, or the non-empty hours of a day, in one blob.

One row per target per minute (1.44 million rows a day at 1,000 targets) made the rollups ~7 GB at the
default retention; packing an hour (or a day) per row and compressing it keeps them well under 1 GB.

Layout (then raw deflate, after a version byte): the entry count, then one column per field (offsets,
probes, failures, degraded, maintenance, latency sum, latency max), each as a width byte and the values
split into byte planes (all low bytes, then the next ones...) so that deflate sees the mostly-constant
high bytes together. Packs with histograms add the day's total histogram first (so whole days are read
without touching the hours), then per entry the first bucket, the run length and the dense counts.

Latencies are quantised when packed: sums to the nearest `unit` microseconds, maxima rounded *up* (the
maximum caps percentile estimates, so it must stay an upper bound).
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping

__all__ = ["Counts", "day_histogram", "decode", "encode", "histogram_total"]

_VERSION = 1
_TYPECODES = {array(code).itemsize: code for code in ("B", "H", "I", "L", "Q")}
_LITTLE = sys.byteorder == "little"


class Counts:
    """Totals of one target over one minute or hour (mutable while buffered, never after a commit)."""

    __slots__ = (
        "degraded",
        "failures",
        "histogram",
        "latency_max_us",
        "latency_sum_us",
        "maintenance",
        "probes",
    )

    def __init__(self) -> None:
        self.probes = 0
        self.failures = 0
        self.degraded = 0
        self.maintenance = 0
        self.latency_sum_us = 0
        self.latency_max_us = 0
        self.histogram: dict[int, int] = {}

    def merge(self, other: Counts) -> None:
        self.probes += other.probes
        self.failures += other.failures
        self.degraded += other.degraded
        self.maintenance += other.maintenance
        self.latency_sum_us += other.latency_sum_us
        self.latency_max_us = max(self.latency_max_us, other.latency_max_us)
        for index, count in other.histogram.items():
            self.histogram[index] = self.histogram.get(index, 0) + count

    def merged(self, other: Counts) -> Counts:
        """A new object holding the sum (committed objects are shared, so they are never changed)."""
        result = Counts()
        result.merge(self)
        result.merge(other)
        return result


def _column(values: list[int]) -> bytes:
    top = max(values, default=0)
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
    packed = array(_TYPECODES[width], values)
    if not _LITTLE:
        packed.byteswap()
    data = packed.tobytes()
    return bytes((width,)) + b"".join(data[plane::width] for plane in range(width))


def _read_column(data: bytes, pos: int, count: int) -> tuple[array, int]:
    width = data[pos]
    pos += 1
    size = count * width
    if width == 1:
        values = array("B", data[pos : pos + size])
    else:
        interleaved = bytearray(size)
        for plane in range(width):
            interleaved[plane::width] = data[pos + plane * count : pos + (plane + 1) * count]
        values = array(_TYPECODES[width])
        values.frombytes(bytes(interleaved))
        if not _LITTLE:
            values.byteswap()
    return values, pos + size


def _histogram_columns(histograms: list[dict[int, int]]) -> bytes:
    firsts, lengths, counts = [], [], []
    for histogram in histograms:
        if not histogram:
            firsts.append(0)
            lengths.append(0)
            continue
        low, high = min(histogram), max(histogram)
        firsts.append(low)
        lengths.append(high - low + 1)
        counts.extend(histogram.get(index, 0) for index in range(low, high + 1))
    return _column(firsts) + _column(lengths) + _column(counts)


def _read_histograms(data: bytes, pos: int, count: int) -> tuple[list[dict[int, int]], int]:
    firsts, pos = _read_column(data, pos, count)
    lengths, pos = _read_column(data, pos, count)
    counts, pos = _read_column(data, pos, sum(lengths))
    histograms: list[dict[int, int]] = []
    at = 0
    for first, length in zip(firsts, lengths, strict=True):
        run = counts[at : at + length]
        at += length
        histograms.append({first + i: c for i, c in enumerate(run) if c})
    return histograms, pos


def encode(entries: Mapping[int, Counts], unit_us: int, with_histograms: bool) -> bytes:
    """The blob for {offset: counts} (offset: minute of the hour, or hour of the day)."""
    offsets = sorted(entries)
    rows = [entries[offset] for offset in offsets]
    parts = [bytes((len(offsets),))]
    if with_histograms:
        parts.append(_histogram_columns([histogram_total(rows)]))
    parts += [
        _column(offsets),
        _column([r.probes for r in rows]),
        _column([r.failures for r in rows]),
        _column([r.degraded for r in rows]),
        _column([r.maintenance for r in rows]),
        _column([(r.latency_sum_us + unit_us // 2) // unit_us for r in rows]),
        _column([-(-r.latency_max_us // unit_us) for r in rows]),
    ]
    if with_histograms:
        parts.append(_histogram_columns([r.histogram for r in rows]))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return bytes((_VERSION,)) + compressor.compress(b"".join(parts)) + compressor.flush()


def _inflate(blob: bytes) -> bytes:
    if not blob or blob[0] != _VERSION:
        raise ValueError(f"unknown rollup pack version {blob[:1]!r}")
    return zlib.decompress(blob[1:], -15)


def decode(blob: bytes, unit_us: int, with_histograms: bool) -> dict[int, Counts]:
    """{offset: counts} back from `encode` (latencies in the quantised unit, as microseconds)."""
    data = _inflate(blob)
    count = data[0]
    pos = 1
    if with_histograms:
        _, pos = _read_histograms(data, pos, 1)
    columns = []
    for _ in range(7):
        column, pos = _read_column(data, pos, count)
        columns.append(column)
    histograms = _read_histograms(data, pos, count)[0] if with_histograms else [{}] * count
    entries: dict[int, Counts] = {}
    for offset, probes, failures, degraded, maintenance, total, top, histogram in zip(
        *columns, histograms, strict=True
    ):
        counts = Counts()
        counts.probes, counts.failures, counts.degraded, counts.maintenance = (
            probes,
            failures,
            degraded,
            maintenance,
        )
        counts.latency_sum_us, counts.latency_max_us = total * unit_us, top * unit_us
        counts.histogram = histogram
        entries[offset] = counts
    return entries


def day_histogram(blob: bytes) -> dict[int, int]:
    """Only the total histogram at the front of a pack with histograms (whole days in a report)."""
    return _read_histograms(_inflate(blob), 1, 1)[0][0]


def histogram_total(rows: Iterable[Counts]) -> dict[int, int]:
    """The sum of the histograms of several entries."""
    total: dict[int, int] = {}
    for row in rows:
        for index, count in row.histogram.items():
            total[index] = total.get(index, 0) + count
    return total
