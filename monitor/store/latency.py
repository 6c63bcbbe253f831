"""A compact, fixed log-bucket latency histogram for rollups.

Buckets grow by 2^(1/8) (about 9 %) from 1 ms, so any percentile read back is within about 4.5 % of the
true sample (the geometric middle of its bucket, capped by the exact maximum). The bounds never change,
so histograms written years apart merge by adding counts.

Encoding: a run of 2-byte pairs (bucket index, count) for non-empty buckets only; a count above 255 takes
several pairs. Per-minute rows hold a handful of probes, so this keeps the biggest table small.
Concatenating two encodings is a valid encoding of their sum, which lets SQL merge them cheaply.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping

__all__ = [
    "BUCKETS",
    "bucket_bounds",
    "bucket_index",
    "decode",
    "encode",
    "histogram_of",
    "merge_encoded",
    "percentile",
]

BUCKETS = 144
_STEPS_PER_DOUBLING = 8
_BASE = 0.001  # seconds: bucket 0 holds everything faster than this
_PAIR = struct.Struct("<BB")
_MAX_COUNT = 0xFF


def bucket_index(seconds: float) -> int:
    """The bucket holding a latency; the last bucket also takes everything slower (about 4 minutes+)."""
    if seconds < _BASE:
        return 0
    index = math.floor(math.log2(seconds / _BASE) * _STEPS_PER_DOUBLING) + 1
    return min(index, BUCKETS - 1)


def bucket_bounds(index: int) -> tuple[float, float]:
    """Lower (inclusive) and upper (exclusive) latency of a bucket, in seconds."""
    if index <= 0:
        return 0.0, _BASE
    low = _BASE * 2 ** ((index - 1) / _STEPS_PER_DOUBLING)
    high = math.inf if index >= BUCKETS - 1 else _BASE * 2 ** (index / _STEPS_PER_DOUBLING)
    return low, high


def encode(counts: Mapping[int, int]) -> bytes:
    """Sparse bytes for {bucket index: count}; counts above 255 are split over repeated pairs."""
    parts: list[bytes] = []
    for index in sorted(counts):
        count = counts[index]
        while count > 0:
            chunk = min(count, _MAX_COUNT)
            parts.append(_PAIR.pack(index, chunk))
            count -= chunk
    return b"".join(parts)


def decode(data: bytes | None, into: dict[int, int] | None = None) -> dict[int, int]:
    """{bucket index: count} from one or several concatenated encodings (added into `into` if given)."""
    counts = {} if into is None else into
    if data:
        for index, count in _PAIR.iter_unpack(data[: len(data) - len(data) % _PAIR.size]):
            counts[index] = counts.get(index, 0) + count
    return counts


def merge_encoded(first: bytes | None, second: bytes | None) -> bytes:
    """Sum of two encodings, re-packed so repeated upserts do not grow the blob."""
    return encode(decode(second, decode(first)))


def percentile(counts: Mapping[int, int], quantile: float, maximum: float | None = None) -> float | None:
    """Nearest-rank estimate of a quantile (0..1) in seconds; None for an empty histogram."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(quantile * total))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return _representative(index, maximum)
    return _representative(max(counts), maximum)


def _representative(index: int, maximum: float | None) -> float:
    low, high = bucket_bounds(index)
    if index == 0:
        value = _BASE / 2
    elif math.isinf(high):
        value = low
    else:
        value = math.sqrt(low * high)
    # The exact maximum is known, and no percentile can exceed it.
    return min(value, maximum) if maximum is not None else value


def histogram_of(latencies: Iterable[float]) -> dict[int, int]:
    """Counts per bucket for a series of latencies (handy for tests and benchmarks)."""
    counts: dict[int, int] = {}
    for latency in latencies:
        index = bucket_index(latency)
        counts[index] = counts.get(index, 0) + 1
    return counts
