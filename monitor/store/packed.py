"""Packed rollup rows: the non-empty minutes of an hour, or the non-empty hours of a day, in one blob.

One row per target per minute (1.44 million rows a day at 1,000 targets) made the rollups ~7 GB at the
default retention; packing an hour (or a day) per row and compressing it brings them to ~0.86 GB.

Layout (version 2; then raw deflate, after a version byte): the entry count, then one column per field
(gaps between offsets, probes, failures, degraded, maintenance, latency sum, latency maximum), each as a
width byte and the values split into byte planes (all low bytes, then the next ones...) so that deflate
sees the mostly-constant high bytes together. Packs with histograms then hold the total histogram of the
row (so whole days are read without touching the hours), each entry's histogram size, and each entry's
counts as differences from the total scaled to its size, bucket by bucket (lossless: hours of one day
share their latency distribution, so the differences are sampling noise around zero).

Latencies are quantised to levels 2^(1/16) apart (4.4 %): sums to the nearest level (read back within
2.2 %), maxima rounded *up* (within 4.4 % above: the maximum caps percentile estimates, so it must stay
an upper bound). Sums and maxima are stored as levels from the row's lowest level, maxima relative to
their sum, so they fit one byte. Version 1 packs (linear units, plain offsets, dense counts) still read.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping

__all__ = [
    "Counts",
    "ceil_latency",
    "day_histogram",
    "decode",
    "encode",
    "histogram_total",
    "histogram_total_of",
]

_VERSION = 2
_VERSION_1 = 1
# Latency sums (and minute maxima) as levels 2^(1/16) apart (4.4 %), in microseconds: a sum is read back
# within 2.2 %, a minute maximum rounded up to the next level (within 4.4 % above, still an upper bound).
_BASE = struct.Struct("<h")
_LEVELS_PER_DOUBLING = 16
_LEVELS = sorted({math.ceil(2 ** (i / _LEVELS_PER_DOUBLING)) for i in range(_LEVELS_PER_DOUBLING * 48)})
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


def _log_level(value: int, up: bool) -> int:
    """0 for 0, else 1 + the index of the nearest level (or the first level not below it when `up`)."""
    if value <= 0:
        return 0
    index = min(bisect_left(_LEVELS, value), len(_LEVELS) - 1)
    if not up and index and value - _LEVELS[index - 1] <= _LEVELS[index] - value:
        index -= 1
    return index + 1


def _log_value(level: int) -> int:
    return _LEVELS[level - 1] if level else 0


def _zigzag(value: int) -> int:
    return value << 1 if value >= 0 else (-value << 1) - 1


def _unzigzag(value: int) -> int:
    return value >> 1 if not value & 1 else -((value + 1) >> 1)


def _expected(day_count: int, hour_probes: int, day_probes: int) -> int:
    # Integer arithmetic only: the decoder must get exactly the same model.
    return (day_count * hour_probes + day_probes // 2) // day_probes


def ceil_latency(value_us: int) -> int:
    """A latency maximum as it reads back from a pack: rounded up to the next level (never below it)."""
    return _log_value(_log_level(value_us, True))


def encode(entries: Mapping[int, Counts], with_histograms: bool) -> bytes:
    """The blob for {offset: counts} (offset: minute of the hour, or hour of the day)."""
    offsets = sorted(entries)
    rows = [entries[offset] for offset in offsets]
    # Gaps between offsets, not the offsets: a full hour is then a run of zeros.
    gaps = [b - a - 1 for a, b in zip([-1, *offsets], offsets, strict=False)]
    parts = [
        bytes((len(offsets),)),
        _column(gaps),
        _column([r.probes for r in rows]),
        _column([r.failures for r in rows]),
        _column([r.degraded for r in rows]),
        _column([r.maintenance for r in rows]),
        *_latency_columns(rows),
    ]
    if with_histograms:
        parts.append(_residual_histograms([r.histogram for r in rows]))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return bytes((_VERSION,)) + compressor.compress(b"".join(parts)) + compressor.flush()


def _latency_columns(rows: list[Counts]) -> tuple[bytes, bytes]:
    """Sum levels, and maximum levels as their distance from the sum's, each from its own minimum.

    Levels of one row sit in a narrow band (~500 for a 0.1 s minute sum): with the base taken out
    they fit one byte, and the maximum moves with the sum, so its distance varies less than itself.
    """
    sums = [_log_level(r.latency_sum_us, False) for r in rows]
    tops = [_log_level(r.latency_max_us, True) - level for r, level in zip(rows, sums, strict=True)]
    return _based_column(sums), _based_column(tops)


def _based_column(values: list[int]) -> bytes:
    base = min(values, default=0)
    return _BASE.pack(base) + _column([value - base for value in values])


def _read_based_column(data: bytes, pos: int, count: int) -> tuple[list[int], int]:
    (base,) = _BASE.unpack_from(data, pos)
    values, pos = _read_column(data, pos + _BASE.size, count)
    return [value + base for value in values], pos


def _residual_histograms(histograms: list[dict[int, int]]) -> bytes:
    """The total histogram, then each entry as its difference from the total scaled to its own size.

    Entries of one row share their latency distribution, so the differences are small numbers around
    zero (sampling noise) where the raw counts spread over 0..hundreds: about a third smaller deflated.
    """
    total = histogram_total_of(histograms)
    head = _histogram_columns([total])
    sizes = [sum(h.values()) for h in histograms]
    if not total:
        return head + _column(sizes)
    low, high = min(total), max(total)
    day_probes = sum(sizes)
    # Bucket by bucket (all entries of one bucket together): neighbours then have similar magnitudes.
    residuals = []
    for index in range(low, high + 1):
        day_count = total.get(index, 0)
        for histogram, size in zip(histograms, sizes, strict=True):
            residuals.append(_zigzag(histogram.get(index, 0) - _expected(day_count, size, day_probes)))
    return head + _column(sizes) + _column(residuals)


def _read_residual_histograms(data: bytes, pos: int, count: int) -> list[dict[int, int]]:
    totals, pos = _read_histograms(data, pos, 1)
    total = totals[0]
    sizes, pos = _read_column(data, pos, count)
    if not total:
        return [{} for _ in range(count)]
    low, high = min(total), max(total)
    width = high - low + 1
    residuals, pos = _read_column(data, pos, count * width)
    day_probes = sum(sizes)
    histograms: list[dict[int, int]] = [{} for _ in range(count)]
    at = 0
    for index in range(low, high + 1):
        day_count = total.get(index, 0)
        for histogram, size in zip(histograms, sizes, strict=True):
            value = _expected(day_count, size, day_probes) + _unzigzag(residuals[at])
            at += 1
            if value:
                histogram[index] = value
    return histograms


def _inflate(blob: bytes) -> bytes:
    if not blob or blob[0] not in (_VERSION, _VERSION_1):
        raise ValueError(f"unknown rollup pack version {blob[:1]!r}")
    return zlib.decompress(blob[1:], -15)


def decode(blob: bytes, with_histograms: bool, v1_unit_us: int = 1) -> dict[int, Counts]:
    """{offset: counts} back from `encode` (latencies quantised as documented above, in microseconds).

    `v1_unit_us` is the latency unit of version 1 packs, which used a fixed unit per table.
    """
    data = _inflate(blob)
    if blob[0] == _VERSION_1:
        return _decode_v1(data, v1_unit_us, with_histograms)
    count = data[0]
    pos = 1
    columns = []
    for _ in range(5):
        column, pos = _read_column(data, pos, count)
        columns.append(column)
    gaps, probes, failures, degraded, maintenance = columns
    sums, pos = _read_based_column(data, pos, count)
    distances, pos = _read_based_column(data, pos, count)
    tops = [level + distance for level, distance in zip(sums, distances, strict=True)]
    offsets, at = [], -1
    for gap in gaps:
        at += gap + 1
        offsets.append(at)
    if with_histograms:
        histograms = _read_residual_histograms(data, pos, count)
    else:
        histograms = [{} for _ in range(count)]
    entries: dict[int, Counts] = {}
    for i, offset in enumerate(offsets):
        counts = Counts()
        counts.probes, counts.failures = probes[i], failures[i]
        counts.degraded, counts.maintenance = degraded[i], maintenance[i]
        counts.latency_sum_us, counts.latency_max_us = _log_value(sums[i]), _log_value(tops[i])
        counts.histogram = histograms[i]
        entries[offset] = counts
    return entries


def _decode_v1(data: bytes, unit_us: int, with_histograms: bool) -> dict[int, Counts]:
    """Packs written before version 2 (plain offsets, linear latency units, dense hour counts)."""
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
        counts.histogram = dict(histogram)
        entries[offset] = counts
    return entries


def day_histogram(blob: bytes) -> dict[int, int]:
    """Only the total histogram of a pack with histograms (whole days in a report)."""
    data = _inflate(blob)
    if blob[0] == _VERSION_1:
        return _read_histograms(data, 1, 1)[0][0]
    count = data[0]
    pos = 1
    for column in range(7):  # skip the entry columns: the total histogram comes right after them
        if column >= 5:
            pos += _BASE.size
        width = data[pos]
        pos += 1 + width * count
    return _read_histograms(data, pos, 1)[0][0]


def histogram_total_of(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """The sum of several histograms."""
    total: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            total[index] = total.get(index, 0) + count
    return total


def histogram_total(rows: Iterable[Counts]) -> dict[int, int]:
    """The sum of the histograms of several entries."""
    return histogram_total_of(row.histogram for row in rows)
