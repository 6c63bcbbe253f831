"""Dossier endpoints of the JSON API: listing with keyset pagination, one dossier, units, outage evidence.

Registered with `add_routes(app)`; handlers read `app[SERVICES].dossiers` (a `DossierService`).
States are computed in SQL for the request's `now` (see monitor/dossiers/store.py), so a page is one query.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from monitor.dossiers.store import STATES, DossierRow
from monitor.web.common import ApiError, iso, json_error, json_response, parse_limit, parse_time_param
from monitor.web.services import SERVICES

if TYPE_CHECKING:
    from monitor.dossiers.service import DossierService

__all__ = ["add_routes", "decode_cursor", "encode_cursor"]


def encode_cursor(code: str) -> str:
    """An opaque cursor: clients pass it back, never build it."""
    raw = json.dumps({"after": code}, ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw)["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ApiError("cursor: not a cursor returned by this API") from None
    if not isinstance(after, str):
        raise ApiError("cursor: not a cursor returned by this API")
    return after


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


def _dossier_json(service: DossierService, row: DossierRow, now: datetime) -> dict[str, Any]:
    return {
        "code": row.code,
        "source": row.source,
        "status": row.status,
        "state": row.state,
        "unit": {"code": row.unit_code, "name": row.unit_name},
        "procedure": {"code": row.procedure_code, "name": row.procedure_name},
        "assignee": {"id": row.assignee_id, "name": row.assignee_name},
        "received_at": iso(row.received_at),
        "due_at": iso(row.deadline_at),
        "working_seconds_left": _left(service, row, now),
        "released_at": iso(row.released_at),
        "finished_at": iso(row.finished_at),
        "via_postal": row.via_postal,
        "timeliness": row.timeliness,
        "missed_full_syncs": row.missed_full_syncs,
        "first_seen": iso(row.first_seen),
        "last_seen": iso(row.last_seen),
        "overdue_outage": row.overdue_outage,
        "outage_incident_ids": list(row.outage_incident_ids),
    }


async def _list_dossiers(request: web.Request) -> web.Response:
    service = _service(request)
    now = request.app[SERVICES].now()
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        raise ApiError(f"state: must be one of {', '.join(STATES)}")
    unit = request.query.get("unit") or None
    limit = parse_limit(request)
    cursor = request.query.get("cursor") or None
    after = decode_cursor(cursor) if cursor else None
    rows = await service.dossier_store.list_dossiers(
        now, state=state, unit=unit, after=after, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return json_response(
        {
            "dossiers": [_dossier_json(service, row, now) for row in rows],
            "next_cursor": encode_cursor(rows[-1].code) if more and rows else None,
        }
    )


async def _get_dossier(request: web.Request) -> web.Response:
    service = _service(request)
    now = request.app[SERVICES].now()
    code = request.match_info["code"]
    row = await service.dossier_store.get(code, now)
    if row is None:
        raise json_error(web.HTTPNotFound, f"unknown dossier {code!r}")
    body = _dossier_json(service, row, now)
    body["crossings"] = [
        {
            "id": crossing.id,
            "threshold": crossing.threshold,
            "due_at": iso(crossing.due_at),
            "crossed_at": iso(crossing.crossed_at),
            "working_seconds_left": crossing.working_seconds_left,
            "suppressed": crossing.suppressed,
            "outage_overlap": crossing.outage_overlap,
            "outage_incident_ids": list(crossing.outage_incident_ids),
        }
        for crossing in await service.dossier_store.crossings(code)
    ]
    return json_response(body)


async def _units(request: web.Request) -> web.Response:
    service = _service(request)
    now = request.app[SERVICES].now()
    since = parse_time_param(request, "since", now - service.settings.on_time_window)
    summaries = await service.dossier_store.unit_summaries(now, since)
    return json_response(
        {
            "since": iso(since),
            "units": [
                {
                    "code": summary.unit_code,
                    "name": summary.unit_name,
                    "states": summary.states,
                    "returned": summary.returned,
                    "on_time_ratio": summary.on_time_ratio,
                    "via_postal_ratio": summary.postal_ratio,
                }
                for summary in summaries
            ],
        }
    )


async def _overdue_during_outage(request: web.Request) -> web.Response:
    service = _service(request)
    now = request.app[SERVICES].now()
    since = parse_time_param(request, "since", now - timedelta(days=30))
    items = []
    limit = parse_limit(request)
    for crossing, code in await service.dossier_store.overdue_during_outage(since, limit):
        row = await service.dossier_store.get(code, now)
        items.append(
            {
                "code": code,
                "unit": {"code": row.unit_code, "name": row.unit_name} if row else None,
                "procedure": {"code": row.procedure_code, "name": row.procedure_name} if row else None,
                "due_at": iso(crossing.due_at),
                "crossing_id": crossing.id,
                "outage_incident_ids": list(crossing.outage_incident_ids),
                "timeliness": row.timeliness if row else None,
            }
        )
    return json_response({"since": iso(since), "dossiers": items})


def add_routes(app: web.Application) -> None:
    """Register the dossier endpoints under /api/v1 (the app's bearer-token middleware applies)."""
    app.router.add_get("/api/v1/dossiers", _list_dossiers)
    app.router.add_get("/api/v1/dossiers/{code}", _get_dossier)
    app.router.add_get("/api/v1/units", _units)
    app.router.add_get("/api/v1/overdue-during-outage", _overdue_during_outage)
