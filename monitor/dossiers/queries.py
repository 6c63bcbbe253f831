"""Reading dossiers for the API, the CLI, the metrics and the SLA report (SQL both engines run).

Every query reads through `store.reader`, and computes deadline states in SQL for the caller's `now`
(`rows.state_sql`), so a page of the API is one query whichever process wrote the rows. Placeholders
are numbered in the order the values are added (`_Params`), which both engines read the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor.dossiers.rows import COLUMNS, DossierRow, UnitSummary, dossier_row, epoch, state_sql, with_postal
from monitor.store.sql import SqlStore

__all__ = [
    "finished_totals",
    "get_dossier",
    "list_dossiers",
    "returns_by_unit",
    "unit_names",
    "unit_summaries",
]


class _Params(list[Any]):
    """Parameter values; `add` appends one and answers its numbered placeholder."""

    def add(self, value: Any) -> str:
        self.append(value)
        return f"?{len(self)}"


def _select(now: str) -> str:
    return f"SELECT {COLUMNS}, {state_sql(now)}, overdue_outage, outage_incident_ids FROM dossiers"


async def list_dossiers(
    store: SqlStore,
    now: datetime,
    *,
    state: str | None = None,
    unit: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[DossierRow]:
    """Dossiers ordered by code, after `after` (keyset). No state = open and paused ones."""
    params = _Params()
    at = params.add(epoch(now))
    where = []
    if state is None:
        where.append("status IN ('open', 'paused')")
    elif state in ("vanished", "finished", "cancelled", "paused"):
        where.append(f"status = {params.add(state)}")
    else:
        where.append(f"status = 'open' AND {state_sql(at)} = {params.add(state)}")
    if unit is not None:
        where.append(f"unit_code = {params.add(unit)}")
    if after is not None:
        where.append(f"code > {params.add(after)}")
    sql = f"{_select(at)} WHERE {' AND '.join(where)} ORDER BY code LIMIT {params.add(limit)}"
    rows = await store.reader.execute_fetchall(sql, params)
    return [dossier_row(row) for row in rows]


async def get_dossier(store: SqlStore, code: str, now: datetime) -> DossierRow | None:
    rows = await store.reader.execute_fetchall(f"{_select('?1')} WHERE code = ?2", (epoch(now), code))
    return dossier_row(rows[0]) if rows else None


async def unit_summaries(store: SqlStore, now: datetime, since: datetime) -> list[UnitSummary]:
    """Per unit: tracked dossiers by state now, and dossiers returned since `since` by timeliness."""
    units: dict[str, UnitSummary] = {}
    rows = await store.reader.execute_fetchall(
        f"SELECT unit_code, max(unit_name), {state_sql('?1')} AS state, count(*) FROM dossiers"
        " WHERE status IN ('open', 'paused', 'vanished') GROUP BY unit_code, state",
        (epoch(now),),
    )
    for code, name, state, count in rows:
        summary = units.get(code)
        if summary is None:
            summary = units[code] = UnitSummary(code, name)
        summary.states[state] = count
    await _add_returns(store, units, since, None)
    return sorted(units.values(), key=lambda summary: summary.unit_code)


async def returns_by_unit(store: SqlStore, since: datetime, until: datetime) -> list[UnitSummary]:
    """Per unit, dossiers returned in [since, until) by timeliness, with the postal count (no states)."""
    units: dict[str, UnitSummary] = {}
    await _add_returns(store, units, since, until)
    return sorted(units.values(), key=lambda summary: summary.unit_code)


async def _add_returns(
    store: SqlStore, units: dict[str, UnitSummary], since: datetime, until: datetime | None
) -> None:
    params = _Params()
    bound = f"returned_at >= {params.add(epoch(since))}"
    if until is not None:
        bound += f" AND returned_at < {params.add(epoch(until))}"
    rows = await store.reader.execute_fetchall(
        "SELECT unit_code, max(unit_name), coalesce(timeliness, 'none'), count(*), sum(via_postal)"
        f" FROM dossiers WHERE status IN ('finished', 'cancelled') AND {bound}"
        " GROUP BY unit_code, timeliness",
        params,
    )
    for code, name, timeliness, count, postal in rows:
        summary = units.get(code) or UnitSummary(code, name)
        summary.returned[timeliness] = count
        # Dataclass is frozen; the postal count accumulates through a replace.
        units[code] = with_postal(summary, summary.via_postal + (postal or 0))


async def unit_names(store: SqlStore) -> dict[str, str]:
    """The latest name seen for each unit code."""
    rows = await store.reader.execute_fetchall(
        "SELECT unit_code, max(unit_name) FROM dossiers GROUP BY unit_code"
    )
    return {code: name for code, name in rows}


async def finished_totals(store: SqlStore, procedure: bool = False) -> dict[tuple[str, ...], int]:
    """Finished dossiers ever stored by (unit, timeliness[, procedure])."""
    group = "unit_code, timeliness" + (", procedure_code" if procedure else "")
    rows = await store.reader.execute_fetchall(
        f"SELECT {group}, count(*) FROM dossiers WHERE status = 'finished' AND timeliness IS NOT NULL"
        f" GROUP BY {group}"
    )
    return {tuple(row[:-1]): row[-1] for row in rows}
