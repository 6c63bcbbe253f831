"""Reading a source's dates: its formats tried in order, naive times in the source's zone.

This runs for every date of every record of a 100,000-dossier sync (six per record), so the fixed
layouts are parsed by slicing instead of strptime and parsed texts are cached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, Final
from zoneinfo import ZoneInfo

from .rejections import quoted_value

__all__ = ["EPOCH_MS", "EPOCH_S", "ISO", "DateParser"]

# Fixed layouts with a fast path: the text with every ASCII digit turned into "0" must equal the
# template (one C-level translate checks digits and separators at once), then fixed slices give
# y, m, d, H, M, S. About 5x faster than strptime, which matters at 100,000 dossiers x 6 dates.
_TO_ZERO: Final = str.maketrans("123456789", "000000000")
_FAST_LAYOUTS: dict[str, tuple[str, tuple[tuple[int, int], ...]]] = {
    "%d/%m/%Y %H:%M:%S": ("00/00/0000 00:00:00", ((6, 10), (3, 5), (0, 2), (11, 13), (14, 16), (17, 19))),
    "%d/%m/%Y %H:%M": ("00/00/0000 00:00", ((6, 10), (3, 5), (0, 2), (11, 13), (14, 16))),
    "%d/%m/%Y": ("00/00/0000", ((6, 10), (3, 5), (0, 2))),
    "%Y%m%d%H%M%S": ("00000000000000", ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14))),
    "%Y%m%d": ("00000000", ((0, 4), (4, 6), (6, 8))),
    "%Y-%m-%d %H:%M:%S": ("0000-00-00 00:00:00", ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19))),
    "%Y-%m-%dT%H:%M:%S": ("0000-00-00T00:00:00", ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19))),
    "%Y-%m-%d": ("0000-00-00", ((0, 4), (5, 7), (8, 10))),
}

# Special format names besides strftime patterns.
EPOCH_S: Final = "epoch_s"
EPOCH_MS: Final = "epoch_ms"
ISO: Final = "iso"
_EPOCH_FLOOR: Final = 946_684_800  # 2000-01-01T00:00:00Z
_CACHE_SIZE: Final = 50_000


def _fast_parser(pattern: str, zone: ZoneInfo) -> Callable[[str], datetime | None] | None:
    layout = _FAST_LAYOUTS.get(pattern)
    if layout is None:
        return None
    template, slices = layout
    pick = itemgetter(*(slice(start, end) for start, end in slices))

    def parse(text: str) -> datetime | None:
        if text.translate(_TO_ZERO) != template:
            return None
        return datetime(*map(int, pick(text)), tzinfo=zone)

    return parse


class DateParser:
    """Parses a source's dates with its formats, tried in order; naive times are in the source's zone.

    Formats are strftime patterns, `iso` (ISO 8601, offset optional), `epoch_s` or `epoch_ms`.
    Empty values (None, "", "0" for epochs) mean no date; anything else that fails raises ValueError.
    """

    __slots__ = ("_cache", "_steps", "formats", "zone")

    def __init__(self, formats: Sequence[str], zone: ZoneInfo | str) -> None:
        if not formats:
            raise ValueError("date_formats must list at least one format")
        self.formats = tuple(formats)
        self.zone = ZoneInfo(zone) if isinstance(zone, str) else zone
        self._steps = tuple(self._step(pattern) for pattern in self.formats)
        # Text -> parsed value. Due dates cluster on quarter hours and a reconcile re-reads the same
        # dates every 30 minutes, so most lookups hit; datetimes are immutable, so sharing is safe.
        self._cache: dict[str, datetime] = {}

    def _step(self, pattern: str) -> Callable[[Any], datetime | None]:
        zone = self.zone
        if pattern in (EPOCH_S, EPOCH_MS):
            scale = 1000.0 if pattern == EPOCH_MS else 1.0

            def epoch(value: Any) -> datetime | None:
                if isinstance(value, bool):
                    return None
                if isinstance(value, str):
                    try:
                        value = float(value)
                    except ValueError:
                        return None
                if not isinstance(value, int | float):
                    return None
                # No dossier system predates 2000: a smaller number is another layout's digits
                # (20260305 as milliseconds would be 1970), so let the next format have it.
                if value / scale < _EPOCH_FLOOR:
                    return None
                try:
                    return datetime.fromtimestamp(value / scale, tz=zone)
                except (OverflowError, OSError, ValueError):
                    return None

            return epoch
        if pattern == ISO:

            def iso(value: Any) -> datetime | None:
                if not isinstance(value, str):
                    return None
                try:
                    parsed = datetime.fromisoformat(value)
                except ValueError:
                    return None
                return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)

            return iso
        fast = _fast_parser(pattern, zone)

        def strftime_step(value: Any) -> datetime | None:
            if not isinstance(value, str):
                return None
            if fast is not None:
                try:
                    parsed = fast(value)
                except ValueError:  # e.g. 31/02: no other layout of this pattern can fix it
                    return None
                if parsed is not None:
                    return parsed
            try:
                parsed = datetime.strptime(value, pattern)
            except ValueError:
                return None
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)

        return strftime_step

    def parse(self, value: Any) -> datetime | None:
        """The datetime, None for an empty value; ValueError naming the formats when nothing fits."""
        if value is None or value == "":
            return None
        if isinstance(value, str):
            cached = self._cache.get(value)
            if cached is not None:
                return cached
            key = value
            value = value.strip()
            if not value:
                return None
        else:
            key = None
        for step in self._steps:
            parsed = step(value)
            if parsed is not None:
                if key is not None:
                    if len(self._cache) >= _CACHE_SIZE:
                        self._cache.clear()  # crude but bounded; refilled within one sync
                    self._cache[key] = parsed
                return parsed
        if value in (0, "0"):  # epoch sources write 0 for "no date"
            return None
        raise ValueError(f"cannot parse {quoted_value(value)} with formats {list(self.formats)}")
