"""Helpers every API module shares: JSON replies and errors, ISO times, the page size range."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ApiError",
    "TimeParam",
    "iso",
    "json_error",
    "json_response",
    "json_text",
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


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True, slots=True)
class TimeParam:
    """A time query parameter and how the user gave it, for error messages that name it."""

    value: datetime
    shown: str
