"""What start-up re-derivation reads back from the store: recorded crossings rebuilt as events, and
which people already got an incident's own down message."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from alerts.timers import epoch, from_epoch
from monitor.calendar import Calendars
from monitor.events import DossierThresholdCrossed
from monitor.store import SqlStore
from monitor.store.engine import POSTGRESQL, SQLITE, pick

__all__ = ["recorded_crossings", "told_of_incidents"]

_AMOUNT = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_HOURS = {"ms": 1 / 3_600_000, "s": 1 / 3600, "m": 1 / 60, "h": 1.0}
# A stored alert or digest item of crossing c (keys `crossing:<id>:<person>`), found in the key's index.
# The range needs byte order (':' < ';'): PostgreSQL compares in the database's collation, which may
# ignore punctuation, so there it compares in "C" (indexed so by migration 8).
_ALERT_OF_CROSSING = {
    SQLITE: "{0}.dedupe_key >= 'crossing:' || c.id || ':' AND {0}.dedupe_key < 'crossing:' || c.id || ';'",
    POSTGRESQL: "{0}.dedupe_key COLLATE \"C\" >= 'crossing:' || c.id || ':'"
    " AND {0}.dedupe_key COLLATE \"C\" < 'crossing:' || c.id || ';'",
}


async def recorded_crossings(
    store: SqlStore, since: datetime, calendars: Calendars, thresholds: Sequence[str] = ()
) -> list[DossierThresholdCrossed]:
    """Published crossings of dossiers still open (not paused, finished or vanished), rebuilt as events,
    oldest first: those since `since`, and older ones with no alert or digest item stored at all (a
    dossier first seen long overdue is recorded with its old crossing instant, so a crash right after
    recording it would otherwise lose its alerts for good).

    Reads `dossier_crossings` and `dossiers` (monitor/dossier_store.py) directly because DossierStore has
    no "crossings since" query yet; replace with it once it exists. `thresholds` are the configured
    warning keys (`dossiers.thresholds`): the smallest one in each dossier's calendar is the last warning.
    """
    exists = await store.reader.execute_fetchall(
        pick(
            store.dialect,
            sqlite="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dossier_crossings'",
            postgresql="SELECT 1 WHERE to_regclass('dossier_crossings') IS NOT NULL",
        )
    )
    if not exists:
        return []
    of_crossing = _ALERT_OF_CROSSING[store.dialect]
    rows = await store.reader.execute_fetchall(
        "SELECT c.id, c.code, c.unit_code, c.threshold, c.due_at, c.crossed_at, c.working_seconds_left,"
        " c.outage_overlap, c.outage_incident_ids, d.unit_name, d.procedure_code, d.procedure_name,"
        " d.assignee_id, d.assignee_name FROM dossier_crossings AS c JOIN dossiers AS d ON d.code = c.code"
        " WHERE c.suppressed = 0 AND d.status = 'open' AND (c.crossed_at >= ? OR NOT ("
        f" EXISTS (SELECT 1 FROM alert_outbox AS o WHERE {of_crossing.format('o')})"
        f" OR EXISTS (SELECT 1 FROM alert_digest_items AS g WHERE {of_crossing.format('g')})))"
        " ORDER BY c.crossed_at, c.id",
        (epoch(since),),
    )
    amounts = [(key, _working_amount(key)) for key in thresholds]
    events = []
    for row in rows:
        (crossing_id, code, unit_code, threshold, due_at, crossed_at, left, overlap, incident_ids) = row[:9]
        unit_name, procedure_code, procedure_name, assignee_id, assignee_name = row[9:]
        last = False
        if threshold != "overdue" and amounts:
            hours_per_day = calendars.for_dossier(unit_code, procedure_code or None).hours_per_day
            last = threshold == min(amounts, key=lambda item: item[1][0] * hours_per_day + item[1][1])[0]
        events.append(
            DossierThresholdCrossed(
                at=from_epoch(crossed_at),
                crossing_id=crossing_id,
                code=code,
                unit_code=unit_code,
                unit_name=unit_name,
                procedure_code=procedure_code,
                procedure_name=procedure_name,
                assignee_id=assignee_id,
                assignee_name=assignee_name,
                threshold=threshold,
                due_at=from_epoch(due_at),
                working_time_left=timedelta(seconds=left),
                is_last_warning=last,
                outage_overlap=None if overlap is None else bool(overlap),
                outage_incident_ids=tuple(int(part) for part in incident_ids.split(",") if part),
            )
        )
    return events


def _working_amount(key: str) -> tuple[float, float]:
    """(days, hours) of a threshold key like `2d`, `4h`, `1d4h` (as monitor/dossier_config.py writes them;
    parsed here because that module pulls in the probes package, which alerts must not import)."""
    days = hours = 0.0
    for number, unit in _AMOUNT.findall(key):
        if unit == "d":
            days += float(number)
        else:
            hours += float(number) * _HOURS[unit]
    return days, hours


async def told_of_incidents(store: SqlStore) -> dict[int, set[str]]:
    """incident id → people whose outbox holds its own down message (`incident:{id}:down:{person}`).

    Outages sent one message per incident before they were grouped: on the first start after the upgrade
    those incidents join their groups as already announced instead of being named again in a follow-up.
    """
    rows = await store.reader.execute_fetchall(
        "SELECT dedupe_key FROM alert_outbox WHERE dedupe_key LIKE 'incident:%:down:%'"
    )
    told: dict[int, set[str]] = {}
    for (key,) in rows:
        parts = key.split(":")
        if len(parts) == 4 and parts[1].isdigit():
            told.setdefault(int(parts[1]), set()).add(parts[3])
    return told
