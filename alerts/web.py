"""`GET /api/v1/alerts`: what the outbox holds, for people checking whether an alert went out.

Wired by the daemon with `add_routes(app)` on the app from `monitor.web.create_web_app`, so the same bearer
token protects it. The daemon's `alerts` attribute holds the alert service (anything with an `outbox`
attribute, see `AlertService`); while it is None the endpoint answers 503.

Output shows who (person id), what (kind, subject), status, channel, attempts, times and the last error;
never phone numbers, Zalo ids or the message text.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Protocol

from aiohttp import web

from alerts.model import AlertStatus
from alerts.outbox import Outbox
from monitor.web import DAEMON, ApiError, iso, parse_time_param

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "AlertService", "add_routes"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_DEFAULT_SINCE = timedelta(days=1)


class AlertService(Protocol):
    """What the endpoint needs from `daemon.alerts`."""

    outbox: Outbox


def _json_error(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json")


async def _alerts(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    service: AlertService | None = getattr(daemon, "alerts", None)
    if service is None:
        raise _json_error(web.HTTPServiceUnavailable, "alerts are not configured")
    since = parse_time_param(request, "since", daemon.now() - _DEFAULT_SINCE)
    raw_status = request.query.get("status") or None
    status: AlertStatus | None = None
    if raw_status is not None:
        try:
            status = AlertStatus(raw_status)
        except ValueError:
            allowed = ", ".join(item.value for item in AlertStatus)
            raise ApiError(f"status: {raw_status!r} is not one of {allowed}") from None
    raw_limit = request.query.get("limit") or str(DEFAULT_LIMIT)
    try:
        limit = int(raw_limit)
    except ValueError:
        raise ApiError(f"limit: {raw_limit!r} is not a number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(f"limit: must be between 1 and {MAX_LIMIT}")
    rows = await service.outbox.list(since=since, status=status, limit=limit)
    counts = await service.outbox.counts()
    items = []
    for row in rows:
        item = row.public()
        for key, value in item.items():
            if key.endswith("_at") or key == "not_before":
                item[key] = iso(value)
        items.append(item)
    return web.json_response(
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
