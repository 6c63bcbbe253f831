"""The normalized dossier (hồ sơ TTHC) every source maps into, and what a sync returns.

Applicant names and contacts are deliberately absent: sources drop them while mapping, so they can
never reach the store, an alert or a metric.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "Dossier",
    "DossierStatus",
    "SyncBatch",
    "SyncError",
    "SyncFailure",
    "collector_paused",
]


class DossierStatus(StrEnum):
    """The normalized lifecycle: only OPEN dossiers have a running deadline clock."""

    OPEN = "open"
    # Chờ bổ sung (waiting for the applicant's papers) or lockState PAUSE: the clock is stopped.
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Dossier:
    """One dossier as the monitor sees it. Times are timezone aware."""

    code: str
    source: str
    unit_code: str
    status: DossierStatus
    raw_status: str = ""
    unit_name: str = ""
    procedure_code: str = ""
    procedure_name: str = ""
    assignee_id: str = ""
    assignee_name: str = ""
    received_at: datetime | None = None
    # The system's appointment date (NgayHenTra / dueDate): authoritative when present.
    due_at: datetime | None = None
    # Only when the source gives no due date: the engine computes one in working time.
    duration_days: float | None = None
    duration_hours: float | None = None
    # An extension (extendDate) or a new date after a pause; later than due_at when set.
    extended_due_at: datetime | None = None
    released_at: datetime | None = None
    finished_at: datetime | None = None
    via_postal: bool = False
    online: bool | None = None
    modified_at: datetime | None = None

    @property
    def effective_due_at(self) -> datetime | None:
        """The deadline that counts now: an extension replaces the original appointment."""
        if self.extended_due_at is not None and (self.due_at is None or self.extended_due_at > self.due_at):
            return self.extended_due_at
        return self.due_at

    @property
    def returned_at(self) -> datetime | None:
        """When the result left the office, for early / on-time / late classification."""
        return self.released_at or self.finished_at


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """What one fetch from a source produced. `full` = a complete listing (a reconcile)."""

    source: str
    dossiers: tuple[Dossier, ...]
    full: bool
    # The source's own count of items, when it reports one: fewer items than this is a failed sync.
    total_reported: int | None = None
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0


class SyncFailure(StrEnum):
    """Why a sync failed: the `reason` label of tthc_dossier_sync_failures_total."""

    ERROR = "error"
    TIMEOUT = "timeout"
    AUTH = "auth"
    STATUS = "status"
    NOT_JSON = "not_json"
    HTML = "html"
    TRUNCATED = "truncated"
    SUSPICIOUS_EMPTY = "suspicious_empty"
    PARSE = "parse"
    # A reply above the source's byte cap, or a page longer than the page size asked for.
    OVERSIZED = "oversized"


class SyncError(Exception):
    """A sync that must not change any dossier's state; `reason` is a SyncFailure."""

    def __init__(self, reason: SyncFailure, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector during a synchronous bulk pass (no await inside!).

    Mapping a page of records or evaluating 100,000 dossiers allocates hundreds of thousands of
    container objects that all live on; every 700 allocations the collector would walk the young ones,
    and the growing old generation is walked again and again. That was half the CPU of a cold
    evaluation. Nothing in such a pass is cyclic garbage, so the walk is deferred to one collection
    afterwards. Nested use is harmless: only the outermost one re-enables.
    """
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
