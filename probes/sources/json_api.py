"""Any vendor's JSON dossier API, described entirely by configuration (VNPT iGate, Viettel, in-house).

Example:

    - name: igate
      type: json_api
      url: https://igate.example.gov.vn/api/dossiers
      auth: {kind: login, url: https://igate.example.gov.vn/api/login, username: monitor,
             password_file: /run/secrets/igate, body: {user: "{username}", pass: "{password}"},
             token_path: data.token}
      items_path: data.items
      total_path: data.total
      pagination: {kind: page, page_param: p, size_param: n, first_page: 0}
      fields: {code: soHoSo, due_at: ngayHenTra, received_at: ngayNhan, status: trangThai}
      date_formats: ["%d/%m/%Y %H:%M:%S", epoch_ms]
      status_map: {"1": open, "5": paused, "9": finished}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator

from monitor.dossiers import DossierStatus, SyncBatch

from .base import AuthConfig, HttpFetcher, NoAuth, NoPaging, PagingConfig, SourceConfigBase, format_since
from .mapping import DOSSIER_FIELDS, BatchBuilder, DateParser, FieldMapper, split_path

__all__ = ["JsonApiSource", "JsonApiSourceConfig", "StatusMapField", "normalize_status_map"]


def normalize_status_map(value: Any) -> Any:
    """YAML reads `{1: open}` with int keys; raw statuses are compared as text."""
    if isinstance(value, dict):
        return {str(key).strip(): status for key, status in value.items()}
    return value


StatusMapField = dict[str, DossierStatus]


class _MappedConfig(SourceConfigBase):
    """Field mapping settings shared by json_api and csv."""

    fields: dict[str, str]
    date_formats: list[str] = Field(default_factory=lambda: ["iso"], min_length=1)
    status_map: StatusMapField = Field(default_factory=dict)
    # Unknown raw statuses take this status instead of rejecting the record (unknown_status).
    default_status: DossierStatus | None = None

    _status_keys = field_validator("status_map", mode="before")(normalize_status_map)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DOSSIER_FIELDS))
        if unknown:
            raise ValueError(f"unknown dossier fields {unknown}; expected some of {list(DOSSIER_FIELDS)}")
        if "code" not in value:
            raise ValueError("must map code")
        if "due_at" not in value and not (
            "received_at" in value and ({"duration_days", "duration_hours"} & set(value))
        ):
            raise ValueError("must map due_at, or received_at and a duration")
        return value

    def mapper(self, *, dotted: bool = True) -> FieldMapper:
        return FieldMapper(
            self.name,
            self.fields,
            DateParser(self.date_formats, self.zone),
            self.status_map,
            self.default_status,
            dotted=dotted,
        )


class JsonApiSourceConfig(_MappedConfig):
    type: Literal["json_api"]
    url: str
    method: Literal["GET", "POST"] = "GET"
    query: dict[str, str] = Field(default_factory=dict)
    # A JSON body for POST listings (some vendors search with POST).
    body: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthConfig = NoAuth()
    items_path: str = "data"
    total_path: str | None = None
    pagination: PagingConfig = NoPaging()
    # Incremental sync: the query parameter and its value format (strftime, iso, epoch_s, epoch_ms).
    modified_since_param: str | None = None
    modified_since_format: str = "iso"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class JsonApiSource:
    """A configured JSON API; incremental when `modified_since_param` is set."""

    def __init__(self, config: JsonApiSourceConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.name = config.name
        self.type = config.type
        self.supports_incremental = config.modified_since_param is not None
        self._mapper = config.mapper()
        self._items_path = split_path(config.items_path)
        self._total_path = split_path(config.total_path) if config.total_path else None
        self.http = HttpFetcher(
            config.name,
            timeout=config.timeout,
            attempts=config.attempts,
            retry_wait=config.retry_wait,
            auth=config.auth,
            headers=config.headers,
            session=session,
        )

    async def fetch(self, *, since: datetime | None) -> SyncBatch:
        config = self.config
        params = dict(config.query)
        incremental = since is not None and self.supports_incremental
        if incremental:
            assert since is not None and config.modified_since_param is not None
            params[config.modified_since_param] = format_since(
                since, config.modified_since_format, config.zone
            )
        builder = BatchBuilder(self.name, self._mapper, self._mapper.code_of)
        total: int | None = None
        async for page in self.http.pages(
            config.url,
            paging=config.pagination,
            page_size=config.page_size,
            items_path=self._items_path,
            total_path=self._total_path,
            params=params,
            method=config.method,
            body=config.body,
        ):
            builder.add_all(page.items)
            if page.total is not None:
                total = page.total
        return builder.build(full=not incremental, total_reported=total)

    async def close(self) -> None:
        await self.http.close()
