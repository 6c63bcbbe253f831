"""Dossiers and their threshold crossings in the store, on SQLite or PostgreSQL (tables of migration 2).

`DossierStore` is the one object the rest of the daemon holds; the SQL lives by what it does:
`writes.py` (a sync's rows, one transaction each), `crossings.py` (crossings, recorded exactly once by
the unique key and `RETURNING`), `queries.py` (reads for the API, CLI, metrics and reports), and
`rows.py` (the values and columns they share). Tracked dossiers (open, paused, vanished) are also kept in
memory, because every sync compares each listed dossier with what was last stored and must not touch the
database for unchanged ones.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from monitor.dossiers import crossings, queries
from monitor.dossiers.rows import (
    OPEN_STATES,
    STATES,
    CrossingRecord,
    DossierRow,
    NewCrossing,
    SyncWrite,
    Timeline,
    TrackedDossier,
    UnitSummary,
    Upsert,
    epoch,
    from_epoch,
)
from monitor.dossiers.writes import load_dossiers, write_sync
from monitor.store.sql import SqlStore

__all__ = [
    "OPEN_STATES",
    "STATES",
    "CrossingRecord",
    "DossierRow",
    "DossierStore",
    "NewCrossing",
    "SyncWrite",
    "Timeline",
    "TrackedDossier",
    "UnitSummary",
    "Upsert",
    "epoch",
    "from_epoch",
]


class DossierStore:
    """Dossier rows and crossings on a `SqlStore` (writer for writes, reader for queries)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        # Filled by load(): what the sync manager compares each listing with.
        self.tracked: dict[str, TrackedDossier] = {}
        self.closed: dict[str, int] = {}

    async def load(self, sources: Collection[str] | None = None) -> None:
        """Read tracked dossiers and the fingerprints of closed ones into memory (at start-up). With
        `sources` (a replica taking sources over), read only theirs and merge them into memory."""
        if sources is not None and not sources:
            return
        tracked, closed = await load_dossiers(self.store, sources)
        if sources is None:
            self.tracked, self.closed = tracked, closed
            return
        self.forget(sources)
        self.tracked.update(tracked)
        self.closed.update(closed)

    def forget(self, sources: Collection[str]) -> list[str]:
        """Drop the tracked dossiers of `sources` from memory (another replica syncs them now); returns
        their codes. Closed fingerprints stay: they only save re-writing an unchanged closed dossier."""
        codes = [code for code, known in self.tracked.items() if known.dossier.source in sources]
        for code in codes:
            del self.tracked[code]
        return codes

    async def recorded_crossings(self) -> dict[str, set[tuple[str, int]]]:
        """(threshold, due_at) already recorded, per tracked dossier: never to be published again."""
        return await crossings.recorded_crossings(self.store)

    async def write_sync(self, write: SyncWrite) -> None:
        """Apply one successful sync in a single transaction."""
        await write_sync(self.store, write)

    async def record_crossings(self, new: Sequence[NewCrossing]) -> list[int | None]:
        """Insert each crossing unless already recorded; its new row id, or None when it was not new."""
        return await crossings.record_crossings(self.store, new)

    async def list_dossiers(
        self,
        now: datetime,
        *,
        state: str | None = None,
        unit: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[DossierRow]:
        """Dossiers ordered by code, after `after` (keyset). No state = open and paused ones."""
        return await queries.list_dossiers(self.store, now, state=state, unit=unit, after=after, limit=limit)

    async def get(self, code: str, now: datetime) -> DossierRow | None:
        return await queries.get_dossier(self.store, code, now)

    async def crossings(self, code: str) -> list[CrossingRecord]:
        """The crossing history of one dossier, oldest first."""
        return await crossings.crossing_history(self.store, code)

    async def unit_summaries(self, now: datetime, since: datetime) -> list[UnitSummary]:
        """Per unit: tracked dossiers by state now, and dossiers returned since `since` by timeliness."""
        return await queries.unit_summaries(self.store, now, since)

    async def returns_by_unit(self, since: datetime, until: datetime) -> list[UnitSummary]:
        """Per unit, dossiers returned in [since, until) by timeliness, with the postal count (no states)."""
        return await queries.returns_by_unit(self.store, since, until)

    async def overdue_by_unit(self, since: datetime, until: datetime) -> dict[str, tuple[int, int]]:
        """Per unit, dossiers that turned overdue in [since, until), and how many during an outage."""
        return await crossings.overdue_by_unit(self.store, since, until)

    async def unit_names(self) -> dict[str, str]:
        """The latest name seen for each unit code."""
        return await queries.unit_names(self.store)

    async def finished_totals(self, procedure: bool = False) -> dict[tuple[str, ...], int]:
        """Finished dossiers ever stored by (unit, timeliness[, procedure])."""
        return await queries.finished_totals(self.store, procedure)

    async def overdue_outage_totals(self) -> dict[str, int]:
        """Overdue crossings with a dossier-system incident in the window before, per unit."""
        return await crossings.overdue_outage_totals(self.store)

    async def overdue_during_outage(
        self, since: datetime, limit: int = 1000
    ) -> list[tuple[CrossingRecord, str]]:
        """Overdue crossings since `since` that an outage overlapped, newest first, with their codes."""
        return await crossings.overdue_during_outage(self.store, since, limit)
