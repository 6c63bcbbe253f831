"""Helpers every API module shares: JSON errors, ISO times and the time query parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from monitor.durations import format_duration, parse_duration
from monitor.web.services import SERVICES

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ApiError",
    "TimeParam",
    "iso",
    "json_error",
    "json_response",
    "json_text",
    "parse_limit",
    "parse_time_param",
    "parse_time_range",
]

# One page size range for every list route, so a client needs one rule.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class ApiError(web.HTTPBadRequest):
    """A 400 with a JSON body naming the offending parameter."""

    def __init__(self, message: str) -> None:
        super().__init__(text=json_text({"error": message}), content_type="application/json")


def json_text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def json_response(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON reply with Vietnamese written as UTF-8 (`Hồ sơ`), not `\\u` escapes."""
    return web.json_response(payload, status=status, headers=headers, dumps=json_text)


def json_error(status: type[web.HTTPException], message: str) -> web.HTTPException:
    """An HTTP error with the API's body, `{"error": message}`, Vietnamese left readable."""
    return status(text=json_text({"error": message}), content_type="application/json")


def parse_limit(request: web.Request, default: int = DEFAULT_LIMIT) -> int:
    """`limit`: an integer from 1 to MAX_LIMIT, `default` when absent."""
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(f"limit: {raw!r} is not an integer from 1 to {MAX_LIMIT}")
    return value


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True, slots=True)
class TimeParam:
    """A time query parameter and how the user gave it, for error messages that name it."""

    value: datetime
    shown: str


def parse_time_param(request: web.Request, name: str, default: datetime) -> datetime:
    """A query parameter as an aware time: ISO 8601, or a duration meaning that long ago (`30d`)."""
    return _time_param(request, name, default, "").value


def _time_param(request: web.Request, name: str, default: datetime, default_text: str) -> TimeParam:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return TimeParam(default, f"{name} (default: {default_text})" if default_text else name)
    services = request.app[SERVICES]
    now = services.now()
    try:
        return TimeParam(now - parse_duration(raw), f"{name}={raw}")
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(f"{name}: {raw!r} is neither an ISO 8601 time nor a duration like 30d") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=services.config.zone)
    return TimeParam(value, f"{name}={raw}")


def parse_time_range(
    request: web.Request, default_span: timedelta, *, start: str = "from", end: str = "to"
) -> tuple[datetime, datetime]:
    """`from` and `to` (defaults: `default_span` ago, now); a 400 naming both when they are reversed."""
    now = request.app[SERVICES].now()
    first = _time_param(request, start, now - default_span, f"{format_duration(default_span)} ago")
    last = _time_param(request, end, now, "now")
    if last.value <= first.value:
        raise ApiError(
            f"{start}, {end}: {first.shown} must be earlier than {last.shown}"
            f" ({iso(first.value)} is not before {iso(last.value)})"
        )
    return first.value, last.value
