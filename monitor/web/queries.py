"""The query parameters of every API route, as pydantic models: handlers validate through them and the
OpenAPI document describes them, so the rules are written once.

Each check raises `QueryError` with the API's message naming the parameter (`limit: '0' is not an integer
from 1 to 1000`); `read_call` (and `parse_query`) turns the first one into a 400 `{"error": ...}`. An
empty value means the parameter is absent, as it always did. Unknown parameters are ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from alerts.model import AlertStatus
from monitor.dossiers.store import STATES
from monitor.durations import format_duration, parse_duration
from monitor.web.common import DEFAULT_LIMIT, MAX_LIMIT, ApiError, TimeParam, iso
from monitor.web.services import SERVICES, WebServices

__all__ = [
    "AlertsQuery",
    "ApiCall",
    "DossiersQuery",
    "IncidentsQuery",
    "OverdueQuery",
    "QueryError",
    "SinceQuery",
    "UptimeQuery",
    "decode_cursor",
    "encode_cursor",
    "ordered_range",
    "parse_query",
    "read_call",
]

# Times a query may name: before 1970 nothing was monitored, and near year 9999 converting between
# zones overflows. Outside this, a precise 400 rather than an overflow deep in a handler.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)

Query = TypeVar("Query", bound=BaseModel)


class QueryError(ValueError):
    """A query parameter is wrong; the message names it and is the API's error text as is."""


@dataclass(frozen=True, slots=True)
class _Clock:
    """What time parameters need to become instants: the request's `now` and the office's zone."""

    now: datetime
    zone: ZoneInfo


@dataclass(frozen=True, slots=True)
class ApiCall(Generic[Query]):
    """One API request as its handler reads it: the daemon's services, the request's `now`, its query."""

    services: WebServices
    now: datetime
    query: Query

    def window_start(self, default: timedelta) -> datetime:
        """Where a listing's window starts: the query's `since`, else `default` before now."""
        since: TimeParam | None = getattr(self.query, "since", None)
        return since.value if since is not None else self.now - default


def read_call(request: web.Request, model: type[Query]) -> ApiCall[Query]:
    """The services, the request's now and its query validated by `model` (relative times count from
    that now); a 400 naming the first wrong parameter otherwise."""
    services = request.app[SERVICES]
    now = services.now()
    try:
        query = model.model_validate(dict(request.query), context=_Clock(now, services.config.zone))
    except ValidationError as exc:
        raise ApiError(_message(exc)) from None
    return ApiCall(services, now, query)


def parse_query(request: web.Request, model: type[Query]) -> Query:
    """The request's query validated by `model`; a 400 naming the first wrong parameter otherwise."""
    return read_call(request, model).query


def _message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    error = first.get("ctx", {}).get("error")
    if isinstance(error, QueryError):
        return str(error)
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}"


def _limit(raw: Any) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise QueryError(f"limit: {raw!r} is not an integer from 1 to {MAX_LIMIT}")
    return value


def _time(name: str) -> Any:
    """A time parameter: ISO 8601 (the office's zone when it has none) or a duration meaning that long ago."""

    def check(raw: Any, info: ValidationInfo) -> TimeParam:
        clock = info.context
        if not isinstance(clock, _Clock):
            raise QueryError(f"{name}: no clock to read it against")
        text = str(raw)
        try:
            value = clock.now - parse_duration(text)
        except OverflowError:
            raise QueryError(f"{name}: {text!r} reaches before {_EARLIEST.year}") from None
        except ValueError:
            try:
                value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise QueryError(
                    f"{name}: {text!r} is neither an ISO 8601 time nor a duration like 30d"
                ) from None
            if value.tzinfo is None:
                value = value.replace(tzinfo=clock.zone)
        try:
            in_range = _EARLIEST <= value < _LATEST
        except OverflowError:
            in_range = False
        if not in_range:
            raise QueryError(f"{name}: {text!r} is not between {_EARLIEST.year} and {_LATEST.year}")
        return TimeParam(value, f"{name}={text}")

    return Annotated[
        TimeParam,
        BeforeValidator(check),
        WithJsonSchema(
            {
                "type": "string",
                "description": "An ISO 8601 time (the office's zone when it names none) or a duration"
                " meaning that long ago, e.g. 30d, 12h, 1h30m.",
                "examples": ["7d", "2026-03-01T08:00:00+07:00"],
            }
        ),
    ]


def _one_of(name: str, allowed: tuple[str, ...], message: str) -> Any:
    def check(raw: Any) -> str:
        if raw not in allowed:
            raise QueryError(message.format(name=name, raw=raw, allowed=", ".join(allowed)))
        return str(raw)

    return Annotated[str, BeforeValidator(check), WithJsonSchema({"type": "string", "enum": list(allowed)})]


def encode_cursor(code: str) -> str:
    """An opaque cursor: clients pass it back, never build it."""
    raw = json.dumps({"after": code}, ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The dossier code a cursor points after; a QueryError for anything this API did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw)["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise QueryError("cursor: not a cursor returned by this API") from None
    if not isinstance(after, str):
        raise QueryError("cursor: not a cursor returned by this API")
    return after


Limit = Annotated[
    int,
    BeforeValidator(_limit),
    Field(ge=1, le=MAX_LIMIT, description=f"Page size, 1 to {MAX_LIMIT}."),
]
Cursor = Annotated[
    str,
    BeforeValidator(lambda raw: decode_cursor(str(raw))),
    WithJsonSchema({"type": "string", "description": "`next_cursor` of the previous page, as given."}),
]
Since = _time("since")
From = _time("from")
To = _time("to")
DossierState = _one_of("state", STATES, "{name}: must be one of {allowed}")
_ALERT_STATUSES = tuple(item.value for item in AlertStatus)
OutboxStatus = _one_of("status", _ALERT_STATUSES, "{name}: {raw!r} is not one of {allowed}")


class _QueryModel(BaseModel):
    # Unknown parameters are ignored (clients add cache busters); a parameter is a string, one value.
    model_config = ConfigDict(extra="ignore", frozen=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value != ""}
        return data


class SinceQuery(_QueryModel):
    """`since`: where a route's window starts (its default is the route's own)."""

    since: Since | None = None


class IncidentsQuery(_QueryModel):
    """GET /api/v1/incidents."""

    since: Since | None = Field(None, description="Default: 7 days ago.")
    target: str | None = Field(None, description="Only this target's incidents (404 when unknown).")
    limit: Limit = DEFAULT_LIMIT


class UptimeQuery(_QueryModel):
    """GET /api/v1/targets/{name}/uptime: the window `from` (default 30 days ago) to `to` (default now)."""

    start: From | None = Field(None, alias="from")
    end: To | None = Field(None, alias="to")


class DossiersQuery(_QueryModel):
    """GET /api/v1/dossiers: a page of dossiers, ordered by code."""

    state: DossierState | None = None
    unit: str | None = Field(None, description="Only this unit's dossiers (by unit code).")
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


class OverdueQuery(_QueryModel):
    """GET /api/v1/overdue-during-outage."""

    since: Since | None = Field(None, description="Default: 30 days ago.")
    limit: Limit = DEFAULT_LIMIT


class AlertsQuery(_QueryModel):
    """GET /api/v1/alerts."""

    since: Since | None = Field(None, description="Default: 1 day ago.")
    status: OutboxStatus | None = None
    limit: Limit = DEFAULT_LIMIT


def ordered_range(
    first: TimeParam | None, last: TimeParam | None, now: datetime, default_span: timedelta
) -> tuple[datetime, datetime]:
    """`from` and `to` with their defaults (`default_span` ago, now); a 400 naming both when reversed."""
    first = first or TimeParam(now - default_span, f"from (default: {format_duration(default_span)} ago)")
    last = last or TimeParam(now, "to (default: now)")
    if last.value <= first.value:
        raise ApiError(
            f"from, to: {first.shown} must be earlier than {last.shown}"
            f" ({iso(first.value)} is not before {iso(last.value)})"
        )
    return first.value, last.value
