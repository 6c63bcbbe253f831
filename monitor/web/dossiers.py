"""Dossier endpoints of the JSON API: listing with keyset pagination, one dossier, units, outage evidence.

Registered with `add_routes(app)`; handlers read `app[SERVICES].dossiers` (a `DossierService`).
States are computed in SQL for the request's `now` (see monitor/dossiers/rows.py), so a page is one query.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from monitor.dossiers.store import DossierRow
from monitor.web.common import json_error
from monitor.web.queries import (
    DossiersQuery,
    OverdueQuery,
    SinceQuery,
    decode_cursor,
    encode_cursor,
    read_call,
)
from monitor.web.replies import (
    CrossingItem,
    DossierDetail,
    DossierItem,
    DossiersReply,
    ErrorReply,
    Named,
    OverdueItem,
    OverdueReply,
    Person,
    UnitItem,
    UnitsReply,
    reply,
)
from monitor.web.routes import Reply, RouteFamily, add_route
from monitor.web.services import SERVICES

if TYPE_CHECKING:
    from monitor.dossiers.service import DossierService

__all__ = ["add_routes", "decode_cursor", "encode_cursor"]


def _service(request: web.Request) -> DossierService:
    service = getattr(request.app[SERVICES], "dossiers", None)
    if service is None:
        raise json_error(web.HTTPServiceUnavailable, "dossier tracking is not running")
    return service


def _left(service: DossierService, row: DossierRow, now: datetime) -> float | None:
    if row.deadline_at is None or row.status != "open":
        return None
    calendar = service.engine.calendar_for(row.unit_code, row.procedure_code)
    return calendar.working_time_between(now, row.deadline_at).total_seconds()


def _dossier_fields(service: DossierService, row: DossierRow, now: datetime) -> dict[str, object]:
    return {
        "code": row.code,
        "source": row.source,
        "status": row.status,
        "state": row.state,
        "unit": Named(code=row.unit_code, name=row.unit_name),
        "procedure": Named(code=row.procedure_code, name=row.procedure_name),
        "assignee": Person(id=row.assignee_id, name=row.assignee_name),
        "received_at": row.received_at,
        "due_at": row.deadline_at,
        "working_seconds_left": _left(service, row, now),
        "released_at": row.released_at,
        "finished_at": row.finished_at,
        "via_postal": row.via_postal,
        "timeliness": row.timeliness,
        "missed_full_syncs": row.missed_full_syncs,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "overdue_outage": row.overdue_outage,
        "outage_incident_ids": list(row.outage_incident_ids),
    }


async def _list_dossiers(request: web.Request) -> web.Response:
    service = _service(request)
    call = read_call(request, DossiersQuery)
    query, now = call.query, call.now
    rows = await service.dossier_store.list_dossiers(
        now, state=query.state, unit=query.unit, after=query.cursor, limit=query.limit + 1
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return reply(
        DossiersReply(
            dossiers=[DossierItem.model_validate(_dossier_fields(service, row, now)) for row in rows],
            next_cursor=encode_cursor(rows[-1].code) if more and rows else None,
        )
    )


async def _get_dossier(request: web.Request) -> web.Response:
    service = _service(request)
    now = request.app[SERVICES].now()
    code = request.match_info["code"]
    row = await service.dossier_store.get(code, now)
    if row is None:
        raise json_error(web.HTTPNotFound, f"unknown dossier {code!r}")
    crossings = [
        CrossingItem(
            id=crossing.id,
            threshold=crossing.threshold,
            due_at=crossing.due_at,
            crossed_at=crossing.crossed_at,
            working_seconds_left=crossing.working_seconds_left,
            suppressed=crossing.suppressed,
            outage_overlap=crossing.outage_overlap,
            outage_incident_ids=list(crossing.outage_incident_ids),
        )
        for crossing in await service.dossier_store.crossings(code)
    ]
    return reply(DossierDetail.model_validate({**_dossier_fields(service, row, now), "crossings": crossings}))


async def _units(request: web.Request) -> web.Response:
    service = _service(request)
    call = read_call(request, SinceQuery)
    now, since = call.now, call.window_start(service.settings.on_time_window)
    summaries = await service.dossier_store.unit_summaries(now, since)
    return reply(
        UnitsReply(
            since=since,
            units=[
                UnitItem(
                    code=summary.unit_code,
                    name=summary.unit_name,
                    states=summary.states,
                    returned=summary.returned,
                    on_time_ratio=summary.on_time_ratio,
                    via_postal_ratio=summary.postal_ratio,
                )
                for summary in summaries
            ],
        )
    )


async def _overdue_during_outage(request: web.Request) -> web.Response:
    service = _service(request)
    call = read_call(request, OverdueQuery)
    now, since = call.now, call.window_start(timedelta(days=30))
    items = []
    for crossing, code in await service.dossier_store.overdue_during_outage(since, call.query.limit):
        row = await service.dossier_store.get(code, now)
        items.append(
            OverdueItem(
                code=code,
                unit=Named(code=row.unit_code, name=row.unit_name) if row else None,
                procedure=Named(code=row.procedure_code, name=row.procedure_name) if row else None,
                due_at=crossing.due_at,
                crossing_id=crossing.id,
                outage_incident_ids=list(crossing.outage_incident_ids),
                timeliness=row.timeliness if row else None,
            )
        )
    return reply(OverdueReply(since=since, dossiers=items))


_DOSSIERS = RouteFamily(
    tags=("dossiers",), errors={503: Reply("Dossier tracking is not running.", ErrorReply)}
)
_ROUTES = (
    _DOSSIERS.get(
        "/api/v1/dossiers",
        _list_dossiers,
        "A page of tracked dossiers with their deadline state, ordered by code.",
        Reply("The page; `next_cursor` fetches the next one.", DossiersReply),
        query=DossiersQuery,
    ),
    _DOSSIERS.get(
        "/api/v1/dossiers/{code}",
        _get_dossier,
        "One dossier with the deadline thresholds it crossed.",
        Reply("The dossier.", DossierDetail),
        errors={404: Reply("No dossier of that code.", ErrorReply)},
    ),
    _DOSSIERS.get(
        "/api/v1/units",
        _units,
        "Per unit: dossiers per state, returns by timeliness, on-time and postal ratios.",
        Reply("The units.", UnitsReply),
        query=SinceQuery,
    ),
    _DOSSIERS.get(
        "/api/v1/overdue-during-outage",
        _overdue_during_outage,
        "Dossiers that went overdue while a system they depend on was down (evidence for the office).",
        Reply("The dossiers.", OverdueReply),
        query=OverdueQuery,
    ),
)


def add_routes(app: web.Application) -> None:
    """Register the dossier endpoints under /api/v1 (the app's bearer-token middleware applies)."""
    for route in _ROUTES:
        add_route(app, route)
