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
from monitor.web.common import ApiError, iso, json_error, json_response, parse_limit, parse_time_param
from monitor.web.services import SERVICES, AlertsView

__all__ = ["add_routes"]
_DEFAULT_SINCE = timedelta(days=1)


async def _alerts(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    service: AlertsView | None = getattr(services, "alerts", None)
    outbox = service.outbox if service is not None else None
    if outbox is None:
        raise json_error(web.HTTPServiceUnavailable, "alerts are not configured")
    since = parse_time_param(request, "since", services.now() - _DEFAULT_SINCE)
    raw_status = request.query.get("status") or None
    status: AlertStatus | None = None
    if raw_status is not None:
        try:
            status = AlertStatus(raw_status)
        except ValueError:
            allowed = ", ".join(item.value for item in AlertStatus)
            raise ApiError(f"status: {raw_status!r} is not one of {allowed}") from None
    limit = parse_limit(request)
    rows = await outbox.list(since=since, status=status, limit=limit)
    counts = await outbox.counts()
    items = []
    for row in rows:
        item = row.public()
        for key, value in item.items():
            if key.endswith("_at") or key == "not_before":
                item[key] = iso(value)
        items.append(item)
    return json_response(
        {
            "since": iso(since),
            "status": status.value if status else None,
            "counts": {key.value: value for key, value in counts.items()},
            "alerts": items,
        }
    )


def add_routes(app: web.Application) -> None:
    """Add the alert endpoints to the daemon's web app."""
    app.router.add_get("/api/v1/alerts", _alerts)
