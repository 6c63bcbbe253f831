"""SMS text: unaccented Vietnamese, GSM-7 detection, segment counting and fitting.

One SMS carries 160 GSM-7 septets, or 70 UCS-2 code units as soon as one character is outside GSM-7;
a split message carries 153 / 67 per part (the rest is the concatenation header). Vietnamese with
diacritics is always UCS-2, so unaccenting roughly halves the cost of an alert.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENDED",
    "count_segments",
    "fit_segments",
    "is_gsm7",
    "unaccent",
]

# GSM 03.38 default alphabet and its extension table (escape + char: two septets each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

_SINGLE = {"gsm7": 160, "ucs2": 70}
_PART = {"gsm7": 153, "ucs2": 67}

# NFD leaves these as base letters without a combining mark, so they need an explicit mapping.
_EXPLICIT = str.maketrans({"đ": "d", "Đ": "D", "ð": "d", "Ð": "D"})


# Combining marks of the Basic Multilingual Plane, dropped by one str.translate (a per-character Python
# loop was a third of the CPU of sending an SMS in an alert storm).
_MARKS = dict.fromkeys(
    (code for code in range(0x10000) if unicodedata.combining(chr(code))),
    None,
)
_GSM7 = GSM7_BASIC | GSM7_EXTENDED


def unaccent(text: str) -> str:
    """Vietnamese without diacritics: `Đã quá hạn` → `Da qua han`."""
    if text.isascii():
        return text
    stripped = unicodedata.normalize("NFD", text.translate(_EXPLICIT)).translate(_MARKS)
    if stripped and max(stripped) > "\uffff":
        # Marks beyond the BMP (rare) are not in the table.
        stripped = "".join(char for char in stripped if not unicodedata.combining(char))
    return unicodedata.normalize("NFC", stripped)


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 default alphabet or its extension table."""
    return _GSM7.issuperset(text)


def _units(text: str) -> tuple[str, list[int]]:
    """The encoding and the cost of each character in it (septets or UTF-16 code units)."""
    if is_gsm7(text):
        return "gsm7", [2 if char in GSM7_EXTENDED else 1 for char in text]
    return "ucs2", [2 if ord(char) > 0xFFFF else 1 for char in text]


def _total(text: str) -> tuple[str, int]:
    """The encoding and the whole text's cost, without a per-character list."""
    if is_gsm7(text):
        return "gsm7", len(text) + sum(text.count(char) for char in GSM7_EXTENDED.intersection(text))
    return "ucs2", len(text.encode("utf-16-le")) // 2


def count_segments(text: str) -> int:
    """How many SMS parts `text` is billed as; an empty text still costs one."""
    encoding, total = _total(text)
    if total <= _SINGLE[encoding]:
        return 1
    if total == len(text):
        # Every character costs one unit: no pair to keep together, so parts fill up exactly.
        return -(-total // _PART[encoding])
    encoding, costs = _units(text)
    # Parts are filled greedily; an escape pair or a surrogate pair is never split across parts.
    capacity = _PART[encoding]
    parts, used = 1, 0
    for cost in costs:
        if used + cost > capacity:
            parts += 1
            used = 0
        used += cost
    return parts


_WORD = re.compile(r"\S+")


def fit_segments(text: str, max_segments: int, keep: Sequence[str] = ()) -> str:
    """`text` shortened to at most `max_segments` parts, never losing any of the `keep` substrings.

    Words are dropped from the end first, then from the free text between the kept parts, then from
    before the first kept part; each gap is marked with an ellipsis ("..." when the text is GSM-7 so
    the mark does not switch the message to UCS-2, "…" otherwise). Raises ValueError when even the
    kept parts alone do not fit.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    if count_segments(text) <= max_segments:
        return text
    ellipsis = "..." if is_gsm7(text) else "…"
    protected: list[tuple[int, int]] = []
    for item in keep:
        if not item:
            continue
        start = text.find(item)
        if start >= 0:
            protected.append((start, start + len(item)))
    words = [(match.start(), match.end()) for match in _WORD.finditer(text)]
    is_kept = [any(start < p_end and p_start < end for p_start, p_end in protected) for start, end in words]
    kept_indices = [index for index, kept in enumerate(is_kept) if kept]
    first_kept = kept_indices[0] if kept_indices else len(words)
    last_kept = kept_indices[-1] if kept_indices else len(words)
    free = [index for index, kept in enumerate(is_kept) if not kept]
    # Removal order: trailing words (from the end), then the middle, then the lead-in before the first
    # kept part; the opening words (e.g. "[TTHC]") are the last to go.
    order = (
        [i for i in reversed(free) if i > last_kept]
        + [i for i in reversed(free) if first_kept < i < last_kept]
        + [i for i in reversed(free) if i < first_kept]
    )
    alive = [True] * len(words)
    for index in order:
        alive[index] = False
        candidate = _render(text, words, alive, ellipsis)
        if count_segments(candidate) <= max_segments:
            return candidate
    raise ValueError(f"the kept parts alone do not fit in {max_segments} sms segments")


def _render(text: str, words: list[tuple[int, int]], alive: list[bool], ellipsis: str) -> str:
    pieces: list[str] = []
    previous_end: int | None = None
    gap = False
    for (start, end), is_alive in zip(words, alive, strict=True):
        if not is_alive:
            gap = True
            continue
        if previous_end is None:
            if gap:
                pieces.append(ellipsis + " ")
        elif gap:
            pieces.append(" " + ellipsis + " ")
        else:
            pieces.append(text[previous_end:start])
        pieces.append(text[start:end])
        previous_end = end
        gap = False
    if gap:
        pieces.append(ellipsis)
    return "".join(pieces)
