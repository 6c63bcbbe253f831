"""Assembling one fetch's batch: mapped dossiers by code (the last duplicate wins), rejections counted.

Mapping a 100,000-record page must not hold up probes and /healthz, so records are mapped in slices
with the event loop running between them, and the garbage collector is paused within a slice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Final

import structlog

from monitor.dossiers.model import Dossier, SyncBatch, collector_paused

from .paging import Page
from .rejections import Rejected, RejectReason, describe

__all__ = ["BatchBuilder"]

log = structlog.get_logger("tthc.sources")

# Rejections are logged one by one up to this many per sync; the rest only count, so a broken export
# of 100,000 rows does not flood the log.
_LOGGED_REJECTIONS: Final = 20
# Records mapped between two yields to the event loop (5-10 ms of work, rejections included).
_MAPPING_SLICE: Final = 500


class BatchBuilder:
    """Collects mapped dossiers of one fetch: the last of duplicate codes wins, rejections are counted."""

    def __init__(self, source: str, mapper: Callable[[Any], Dossier], code_of: Callable[[Any], str]) -> None:
        self.source = source
        self._mapper = mapper
        self._code_of = code_of
        self._dossiers: dict[str, Dossier] = {}
        self.rejected: Counter[str] = Counter()
        self.duplicates = 0
        self.records = 0

    def add(self, record: Any) -> None:
        index = self.records
        self.records += 1
        try:
            dossier = self._mapper(record)
        except Rejected as exc:
            self.rejected[exc.reason] += 1
            # Not-received submissions are normal data, not a problem worth a warning.
            if exc.reason != RejectReason.NOT_RECEIVED and sum(self.rejected.values()) <= _LOGGED_REJECTIONS:
                code = self._safe_code(record)
                log.warning(
                    "dossier_rejected",
                    source=self.source,
                    code=code,
                    reason=exc.reason,
                    detail=describe(index, code, exc),
                )
            return
        if dossier.code in self._dossiers:
            self.duplicates += 1
            # Re-insert so iteration order follows the winning (last) occurrence.
            del self._dossiers[dossier.code]
        self._dossiers[dossier.code] = dossier

    def add_all(self, records: Iterable[Any]) -> None:
        # A page is mapped synchronously: no collection can reclaim anything during it (see
        # collector_paused), and 100,000 records would otherwise trigger hundreds of them.
        with collector_paused():
            for record in records:
                self.add(record)

    async def add_all_yielding(self, records: Sequence[Any]) -> None:
        """add_all in slices, letting the event loop run between them: a 100,000-record page must not
        hold up probes and /healthz for the whole mapping."""
        for start in range(0, len(records), _MAPPING_SLICE):
            self.add_all(records[start : start + _MAPPING_SLICE])
            await asyncio.sleep(0)

    async def add_pages(self, pages: AsyncIterator[Page]) -> int | None:
        """Every page's records (`add_all_yielding`); the last total the source reported, if any."""
        total: int | None = None
        async for page in pages:
            await self.add_all_yielding(page.items)
            if page.total is not None:
                total = page.total
        return total

    def _safe_code(self, record: Any) -> str:
        try:
            return self._code_of(record)
        except Exception:  # a record too broken to read a code from still gets logged
            return ""

    def build(self, *, full: bool, total_reported: int | None) -> SyncBatch:
        rejected_total = sum(self.rejected.values())
        if rejected_total > _LOGGED_REJECTIONS:
            log.warning(
                "dossiers_rejected", source=self.source, count=rejected_total, reasons=dict(self.rejected)
            )
        return SyncBatch(
            source=self.source,
            dossiers=tuple(self._dossiers.values()),
            full=full,
            total_reported=total_reported,
            rejected=self.rejected,
            duplicates=self.duplicates,
        )
