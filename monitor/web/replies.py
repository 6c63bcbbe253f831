"""The JSON replies of every API route, as pydantic models: handlers build their bodies through them
(`reply(Model(...))`) and the OpenAPI document describes them, so a reply cannot drift from its schema.

Times are written as `iso()` always wrote them (UTC, `Z`); field order is the order clients have seen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from monitor.web.common import iso, json_response

__all__ = [
    "AlertItem",
    "AlertsReply",
    "CrossingItem",
    "DossierDetail",
    "DossierItem",
    "DossiersReply",
    "ErrorReply",
    "IncidentItem",
    "IncidentsReply",
    "Instant",
    "Named",
    "OverdueItem",
    "OverdueReply",
    "Person",
    "ReadyReply",
    "ReloadApplied",
    "ReloadFailed",
    "StoreFacts",
    "TargetItem",
    "TargetsReply",
    "UnitItem",
    "UnitsReply",
    "UptimeReply",
    "reply",
]

Instant = Annotated[
    datetime,
    PlainSerializer(iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def reply(body: _Reply, *, status: int = 200) -> web.Response:
    """The JSON response for a reply model, as its schema says."""
    return json_response(body.model_dump(mode="json", by_alias=True), status=status)


class ErrorReply(_Reply):
    """Every error: what is wrong, naming the parameter or the thing not found."""

    error: str


class StoreFacts(_Reply):
    """What /readyz knows of the store's writer, without touching the disk."""

    backlog: int
    last_commit_age_seconds: float | None
    failing_for_seconds: float


class ReadyReply(_Reply):
    """GET /readyz: ready when every check passes (503 otherwise, same shape)."""

    ready: bool
    checks: dict[str, bool]
    store: StoreFacts
    # Supervised tasks waiting for their restart: name -> the error.
    tasks_down: dict[str, str]


class TargetItem(_Reply):
    name: str
    type: str
    health: str
    since: Instant | None
    in_maintenance: bool
    last_probe_at: Instant | None
    last_duration_seconds: float | None
    last_success: bool | None
    reason: str | None
    detail: str | None
    status_code: int | None
    cert_expiry: Instant | None
    incident_open: bool
    incident_id: int | None
    interval_seconds: float


class TargetsReply(_Reply):
    targets: list[TargetItem]


class UptimeReply(_Reply):
    target: str
    # `from` is a Python keyword: the field is `from_`, written `from`.
    from_: Instant = Field(alias="from")
    to: Instant
    # Over monitored time: the time the monitor was not running is neither up nor down.
    uptime_percent: float | None
    downtime_seconds: float
    # The part of the window the monitor itself was not running.
    unmonitored_seconds: float
    incidents: int
    probes: int
    failures: int
    degraded: int
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class IncidentItem(_Reply):
    id: int
    target: str
    started_at: Instant
    ended_at: Instant | None
    duration_seconds: float
    reason: str | None
    detail: str | None
    open: bool


class IncidentsReply(_Reply):
    incidents: list[IncidentItem]


class Named(_Reply):
    """A unit or a procedure: its code and name."""

    code: str
    name: str


class Person(_Reply):
    """An assignee: their id and name."""

    id: str
    name: str


class DossierItem(_Reply):
    code: str
    source: str
    status: str
    state: str
    unit: Named
    procedure: Named
    assignee: Person
    received_at: Instant | None
    due_at: Instant | None
    working_seconds_left: float | None
    released_at: Instant | None
    finished_at: Instant | None
    via_postal: bool
    timeliness: str | None
    missed_full_syncs: int
    first_seen: Instant
    last_seen: Instant
    overdue_outage: bool | None
    outage_incident_ids: list[int]


class CrossingItem(_Reply):
    id: int
    threshold: str
    due_at: Instant
    crossed_at: Instant
    working_seconds_left: int
    suppressed: bool
    outage_overlap: bool | None
    outage_incident_ids: list[int]


class DossierDetail(DossierItem):
    """One dossier with the deadline thresholds it crossed."""

    crossings: list[CrossingItem]


class DossiersReply(_Reply):
    dossiers: list[DossierItem]
    next_cursor: str | None


class UnitItem(_Reply):
    code: str
    name: str
    states: dict[str, int]
    returned: dict[str, int]
    on_time_ratio: float | None
    via_postal_ratio: float | None


class UnitsReply(_Reply):
    since: Instant
    units: list[UnitItem]


class OverdueItem(_Reply):
    code: str
    unit: Named | None
    procedure: Named | None
    due_at: Instant
    crossing_id: int
    outage_incident_ids: list[int]
    timeliness: str | None


class OverdueReply(_Reply):
    since: Instant
    dossiers: list[OverdueItem]


class AlertItem(_Reply):
    """One outbox row as people may see it: no phone, no Zalo id, no message text."""

    id: int
    alert_id: str
    kind: str
    severity: str
    person_id: str
    subject: str
    status: str
    channel: str | None
    channels: list[str]
    attempts: int
    created_at: Instant
    event_at: Instant
    not_before: Instant
    next_attempt_at: Instant | None
    sent_at: Instant | None
    last_error: str | None
    duplicate: bool


class AlertsReply(_Reply):
    since: Instant
    status: str | None
    counts: dict[str, int]
    alerts: list[AlertItem]


class ReloadApplied(_Reply):
    """POST /api/v1/reload applied the file: the sections that changed, those that need a restart."""

    reloaded: bool
    changed: list[str]
    restart_needed: list[str]
    details: dict[str, Any]


class ReloadFailed(_Reply):
    """POST /api/v1/reload changed nothing: the errors, each naming where it is."""

    reloaded: bool
    errors: list[str]
