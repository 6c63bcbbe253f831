"""Helpers every API module shares: JSON errors, ISO times and the time query parameters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from monitor.durations import parse_duration
from monitor.web.services import SERVICES

__all__ = ["ApiError", "iso", "json_text", "parse_time_param"]


class ApiError(web.HTTPBadRequest):
    """A 400 with a JSON body naming the offending parameter."""

    def __init__(self, message: str) -> None:
        super().__init__(text=json_text({"error": message}), content_type="application/json")


def json_text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def parse_time_param(request: web.Request, name: str, default: datetime) -> datetime:
    """A query parameter as an aware time: ISO 8601, or a duration meaning that long ago (`30d`)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    services = request.app[SERVICES]
    now = services.now()
    try:
        return now - parse_duration(raw)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(f"{name}: {raw!r} is neither an ISO 8601 time nor a duration like 30d") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=services.config.zone)
    return value
