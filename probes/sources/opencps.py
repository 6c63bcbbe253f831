"""OpenCPS v2 (`{base}/dossiers`): the open-source provincial one-stop system (VietOpenCPS/opencps-v2).

Listing: `GET {base_url}/dossiers` with header `groupId`, Basic auth of an admin account (others only see
their own dossiers), and ALWAYS `start`/`end` paging: without `end` the server returns everything at once.

Which dossiers a full reconcile lists: by default every status (no `status` filter). That is the only
way a reconcile still sees a dossier that finished since the last one (releaseDate/finishDate set), so a
dossier never looks "gone" merely because it left the open statuses. Offices with a large history can set
`statuses` to the open ones; then the reconcile only lists those and finishes are learnt from the
incremental sync, which never filters by status (it asks for everything modified since the last sync).

Personal data (`applicantName`, addresses, phones, emails) is never read.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any, Final, Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator

from monitor.configtypes import secret_file_fields
from monitor.dossiers.model import Dossier, DossierStatus, SyncBatch

from .auth import BasicAuth
from .base import HttpSourceConfigBase
from .batch import BatchBuilder
from .dates import DateParser
from .fetcher import HttpFetcher
from .listing import format_since
from .mapping import (
    parse_bool,
    parse_date_field,
    parse_float,
    shared,
    text,
    validate_dossier,
)
from .paging import StartEndPaging, read_pages
from .paths import split_path
from .rejections import Rejected, RejectReason

__all__ = ["OPENCPS_OPEN_STATUSES", "OpenCpsSource", "OpenCpsSourceConfig", "map_opencps_item"]

# Statuses with a running or paused clock (opencps.md "Statuses").
OPENCPS_OPEN_STATUSES: Final = (
    "new",
    "receiving",
    "waiting",
    "processing",
    "pausing",
    "posting",
    "correcting",
    "cancelling",
    "interoperating",
    "collecting",
    "handover",
    "paying",
)
_PAUSED_STATUSES: Final = frozenset({"waiting", "pausing"})
_PAUSED_LOCKS: Final = frozenset({"PAUSE", "PAUSE_OVERDUE"})
_CANCELLED_STATUSES: Final = frozenset({"denied", "cancelled"})
_FINISHED_STATUSES: Final = frozenset({"done", "releasing", "unresolved"})
# Normalized field <- OpenCPS key; errors name the normalized field, like every other source.
_DATE_KEYS: Final = (
    ("received_at", "receiveDate"),
    ("due_at", "dueDate"),
    ("extended_due_at", "extendDate"),
    ("released_at", "releaseDate"),
    ("finished_at", "finishDate"),
    ("modified_at", "modifiedDate"),
)
_DATE_FORMATS: Final = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "epoch_ms")


class OpenCpsSourceConfig(HttpSourceConfigBase):
    type: Literal["opencps"]
    # e.g. https://dichvucong.example.gov.vn/o/rest/v2 (the app is also mounted at /o/secure/rest/v2).
    base_url: str
    group_id: str
    username: str
    password: SecretStr
    # govAgencyCode values; empty = all agencies (`agency=all`, never empty: that means the caller's scope).
    agencies: list[str] = Field(default_factory=list)
    # None = every status (see the module docstring for why that is the default).
    statuses: list[str] | None = None
    # Incremental sync: OpenCPS's modification-time filter and its value format.
    modified_since_param: str | None = "fromModifiedDate"
    modified_since_format: str = "%d/%m/%Y %H:%M:%S"
    # Extra query parameters (e.g. `service`), and raw status -> normalized overrides for local statuses.
    query: dict[str, str] = Field(default_factory=dict)
    status_overrides: dict[str, DossierStatus] = Field(default_factory=dict)
    _files = secret_file_fields("password")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("statuses")
    @classmethod
    def _some_statuses(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must list at least one status, or be left out for all")
        return value


def _postal(value: Any) -> bool:
    # viaPostal is 0/1/2 in OpenCPS (2 = sent): anything non-zero means the result goes by post.
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0
    return str(value).strip().lower() not in ("", "0", "false", "no")


def opencps_status(raw: str, lock_state: str, released: bool, finished: bool) -> DossierStatus:
    """OpenCPS status + lockState + dates -> the normalized status (opencps.md "Statuses")."""
    if raw in _CANCELLED_STATUSES:
        return DossierStatus.CANCELLED
    if released or finished or raw in _FINISHED_STATUSES:
        return DossierStatus.FINISHED
    if raw in _PAUSED_STATUSES or lock_state in _PAUSED_LOCKS:
        return DossierStatus.PAUSED
    return DossierStatus.OPEN


def map_opencps_item(
    item: Any,
    source: str,
    dates: DateParser,
    overrides: dict[str, DossierStatus] | None = None,
) -> Dossier:
    """One `/dossiers` item to a Dossier; Rejected when it cannot be used."""
    if not isinstance(item, dict):
        raise Rejected(RejectReason.NO_CODE, "", f"item is a {type(item).__name__}, not an object")
    get = item.get
    raw_status = sys.intern(text(get("dossierStatus")).lower())
    if raw_status == "new" and not get("receiveDate") and not get("dueDate"):
        # Online submissions get their number and due date at the desk; until then no clock runs.
        raise Rejected(RejectReason.NOT_RECEIVED, "receiveDate", "submitted online, not received yet")
    code = text(get("dossierNo"))
    if not code:
        raise Rejected(RejectReason.NO_CODE, "dossierNo", "missing dossierNo")
    moments: dict[str, datetime | None] = {}
    for name, key in _DATE_KEYS:
        raw = get(key)
        # Most of the six are "" (none): skip the parser call for them.
        moments[name] = parse_date_field(dates, name, raw) if raw else None
    released_at, finished_at = moments["released_at"], moments["finished_at"]
    lock_state = sys.intern(text(get("lockState")).upper())
    status = (overrides or {}).get(raw_status) or opencps_status(
        raw_status, lock_state, released_at is not None, finished_at is not None
    )
    duration = parse_float(get("durationCount"))
    if duration is not None and duration <= 0:
        duration = None  # 0 = no legal deadline configured, not "due immediately"
    hours = text(get("durationUnit")) == "1"
    assignee_id = shared(get("lastActionUserId"))
    return validate_dossier(
        Dossier(
            code=code,
            source=source,
            unit_code=shared(get("govAgencyCode")),
            unit_name=shared(get("govAgencyName")),
            status=status,
            raw_status=sys.intern(f"{raw_status}:{lock_state}") if lock_state else raw_status,
            procedure_code=shared(get("serviceCode")),
            procedure_name=shared(get("serviceName")),
            assignee_id="" if assignee_id == "0" else assignee_id,
            assignee_name=shared(get("currentActionUser")),
            duration_days=None if hours else duration,
            duration_hours=duration if hours else None,
            **moments,
            via_postal=_postal(get("viaPostal")),
            online=parse_bool(get("online")) if get("online") not in (None, "") else None,
        )
    )


class OpenCpsSource:
    """OpenCPS v2 dossier listing with start/end paging; incremental via the modification-time filter."""

    def __init__(self, config: OpenCpsSourceConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.name = config.name
        self.type = config.type
        self.supports_incremental = config.modified_since_param is not None
        self._dates = DateParser(_DATE_FORMATS, config.zone)
        self._overrides = {key.lower(): value for key, value in config.status_overrides.items()}
        self.http = HttpFetcher.for_source(
            config,
            auth=BasicAuth(kind="basic", username=config.username, password=config.password),
            headers={"groupId": config.group_id},
            session=session,
        )

    def _map(self, item: Any) -> Dossier:
        return map_opencps_item(item, self.name, self._dates, self._overrides)

    async def fetch(self, *, since: datetime | None) -> SyncBatch:
        config = self.config
        params = {"agency": ",".join(config.agencies) if config.agencies else "all", **config.query}
        incremental = since is not None and self.supports_incremental
        if incremental:
            assert since is not None and config.modified_since_param is not None
            params[config.modified_since_param] = format_since(
                since, config.modified_since_format, config.zone
            )
        elif config.statuses:
            params["status"] = ",".join(config.statuses)
        builder = BatchBuilder(self.name, self._map, lambda item: text(item.get("dossierNo")))
        total = await builder.add_pages(
            read_pages(
                self.http,
                f"{config.base_url}/dossiers",
                paging=StartEndPaging(kind="start_end"),
                page_size=config.page_size,
                items_path=split_path("data"),
                total_path=split_path("total"),
                params=params,
            )
        )
        return builder.build(full=not incremental, total_reported=total)

    async def close(self) -> None:
        await self.http.close()
