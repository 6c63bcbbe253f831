"""The engine's tracked dossiers and the timer schedule of their next state changes.

Dossiers sharing a timeline change state at the same instants, so the schedule is a heap of instants,
each with a bucket (a plain list) of the entries due then: one list slot per scheduled dossier instead
of a heap tuple each (72 bytes less per dossier at a million), and pushing a dossier onto an instant
already planned is a list append. An entry is due at an instant only while its `next_at` still equals
that instant: re-planning a dossier (or dropping it, which clears `next_at`) leaves its older bucket
slots stale, and they are skipped when their instant comes (lazy invalidation, nothing rescanned).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.calendar import WorkingCalendar
from monitor.dossiers.model import Dossier
from monitor.dossiers.store import Timeline

__all__ = ["Schedule", "TrackedEntry"]


# Mutable on purpose: one per tracked dossier, updated in place on every evaluation.
@dataclass(slots=True, eq=False)
class TrackedEntry:
    """The engine's view of one open or paused dossier."""

    dossier: Dossier
    calendar: WorkingCalendar
    timeline: Timeline | None
    state: str
    # (threshold, due_at epoch seconds) already recorded, in recording order; None until the first.
    # A tuple, usually the verdict's own shared one: most dossiers cross nothing or exactly what
    # their timeline says, and a set would cost 216 bytes each.
    recorded: tuple[tuple[str, int], ...] | None = None
    # The instant this entry is scheduled at; None when nothing is (paused, past its due time, dropped).
    next_at: float | None = None


class Schedule:
    """Instants in a heap, each with the entries due then."""

    __slots__ = ("_buckets", "_instants", "_slots")

    def __init__(self) -> None:
        self._instants: list[float] = []
        self._buckets: dict[float, list[TrackedEntry]] = {}
        # Bucket slots, stale ones included: compaction is due once they far outnumber the live ones.
        self._slots = 0

    def __len__(self) -> int:
        return self._slots

    def push(self, entry: TrackedEntry, instant: float) -> bool:
        """Schedule `entry` (whose next_at is `instant`); True when this is the new earliest instant."""
        self._slots += 1
        bucket = self._buckets.get(instant)
        if bucket is not None:
            bucket.append(entry)
            return False
        self._buckets[instant] = [entry]
        earliest = not self._instants or instant < self._instants[0]
        heapq.heappush(self._instants, instant)
        return earliest

    def earliest(self) -> float | None:
        """The earliest instant at which some entry is still due (stale buckets are dropped on the way)."""
        instants, buckets = self._instants, self._buckets
        while instants:
            instant = instants[0]
            bucket = buckets[instant]
            for index, entry in enumerate(bucket):
                if entry.next_at == instant:
                    if index:
                        del bucket[:index]
                        self._slots -= index
                    return instant
            heapq.heappop(instants)
            del buckets[instant]
            self._slots -= len(bucket)
        return None

    def pop_due(self, now_ts: float) -> list[TrackedEntry]:
        """Every entry due at or before `now_ts`, earliest instant first, removed from the schedule.

        An entry scheduled twice at one instant comes out twice: the caller re-plans it on the first
        and the second is then stale (`next_at` moved on), so it must check `next_at` again.
        """
        instants, buckets = self._instants, self._buckets
        due: list[TrackedEntry] = []
        while instants and instants[0] <= now_ts:
            instant = heapq.heappop(instants)
            bucket = buckets.pop(instant)
            self._slots -= len(bucket)
            due.extend(entry for entry in bucket if entry.next_at == instant)
        return due

    def rebuild(self, entries: Iterable[TrackedEntry]) -> None:
        """Start over from the live entries' own `next_at` (drops every stale slot)."""
        self._instants = []
        self._buckets = {}
        self._slots = 0
        for entry in entries:
            if entry.next_at is not None:
                self.push(entry, entry.next_at)
