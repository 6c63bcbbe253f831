"""`GET /api/v1/alerts`: what the outbox holds, for people checking whether an alert went out.

Added with `add_routes(app)` by `monitor.web.app.create_web_app`, so the same bearer token protects it.
It reads `app[SERVICES].alerts` (an `AlertsView`); while that or its outbox is None it answers 503.

Output shows who (person id), what (kind, subject), status, channel, attempts, times and the last error;
never phone numbers, Zalo ids or the message text.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from alerts.model import AlertStatus
from monitor.web.common import json_error
from monitor.web.queries import AlertsQuery, read_call
from monitor.web.replies import AlertItem, AlertsReply, ErrorReply, reply
from monitor.web.routes import ApiRoute, Reply, add_route
from monitor.web.services import SERVICES, AlertsView

__all__ = ["add_routes"]
_DEFAULT_SINCE = timedelta(days=1)


async def _alerts(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    service: AlertsView | None = getattr(services, "alerts", None)
    outbox = service.outbox if service is not None else None
    if outbox is None:
        raise json_error(web.HTTPServiceUnavailable, "alerts are not configured")
    call = read_call(request, AlertsQuery)
    query, since = call.query, call.window_start(_DEFAULT_SINCE)
    status = AlertStatus(query.status) if query.status else None
    rows = await outbox.list(since=since, status=status, limit=query.limit)
    counts = await outbox.counts()
    return reply(
        AlertsReply(
            since=since,
            status=query.status,
            counts={key.value: value for key, value in counts.items()},
            alerts=[AlertItem.model_validate(row.public()) for row in rows],
        )
    )


_ROUTE = ApiRoute(
    "GET",
    "/api/v1/alerts",
    _alerts,
    "Alerts in the outbox since a time: who, what, status, channel, attempts (never phones or text).",
    {
        200: Reply("The alerts and the outbox's counts per status.", AlertsReply),
        503: Reply("Alerts are not configured.", ErrorReply),
    },
    query=AlertsQuery,
    tags=("alerts",),
)


def add_routes(app: web.Application) -> None:
    """Add the alert endpoints to the daemon's web app."""
    add_route(app, _ROUTE)
