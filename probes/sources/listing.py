"""Configured HTTP listings (json_api, dvcqg): URL, auth, paging, item location and the since filter.

`HttpListingSource` fetches the listing page by page through `fetcher.HttpFetcher` and maps each
record (subclasses say how); with `modified_since_param` set, a sync after the first asks only for what
changed since (`format_since` writes that value) and its batch is incremental, not full.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import aiohttp
from pydantic import Field, field_validator

from monitor.dossiers.model import Dossier, SyncBatch

from .auth import AuthConfig, NoAuth
from .base import HttpSourceConfigBase
from .batch import BatchBuilder
from .fetcher import HttpFetcher
from .paging import NoPaging, PagingConfig, read_pages
from .paths import split_path

__all__ = ["HttpListingConfig", "HttpListingSource", "format_since"]


def format_since(value: datetime, pattern: str, zone: ZoneInfo) -> str:
    """A modified-since filter value: `epoch_s`, `epoch_ms`, `iso` or a strftime pattern in local time."""
    if pattern == "epoch_s":
        return str(int(value.timestamp()))
    if pattern == "epoch_ms":
        return str(int(value.timestamp() * 1000))
    local = value.astimezone(zone)
    if pattern == "iso":
        return local.isoformat()
    return local.strftime(pattern)


class HttpListingConfig(HttpSourceConfigBase):
    """A listing over HTTP whose URL, auth, paging and item location come from the config."""

    url: str
    method: Literal["GET", "POST"] = "GET"
    query: dict[str, str] = Field(default_factory=dict)
    # A JSON body for POST listings (some vendors search with POST).
    body: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthConfig = NoAuth()
    # Where the records are in a reply ("" = the reply is the list itself).
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


class HttpListingSource(ABC):
    """Fetches a configured listing page by page and maps each record; subclasses say how to map."""

    config: HttpListingConfig

    def __init__(self, config: HttpListingConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.name = config.name
        self.type: str = getattr(config, "type", "")
        self.supports_incremental = config.modified_since_param is not None
        self._items_path = split_path(config.items_path)
        self._total_path = split_path(config.total_path) if config.total_path else None
        self.http = HttpFetcher.for_source(config, auth=config.auth, headers=config.headers, session=session)

    @abstractmethod
    def map_record(self, record: Any) -> Dossier:
        """One record as a Dossier; raises Rejected (mapping.py) for a record to skip."""

    @abstractmethod
    def code_of(self, record: Any) -> str:
        """The record's dossier code, for messages and duplicate counting ("" when it has none)."""

    async def fetch(self, *, since: datetime | None) -> SyncBatch:
        config = self.config
        params = dict(config.query)
        incremental = since is not None and self.supports_incremental
        if incremental:
            assert since is not None and config.modified_since_param is not None
            params[config.modified_since_param] = format_since(
                since, config.modified_since_format, config.zone
            )
        builder = BatchBuilder(self.name, self.map_record, self.code_of)
        total = await builder.add_pages(
            read_pages(
                self.http,
                config.url,
                paging=config.pagination,
                page_size=config.page_size,
                items_path=self._items_path,
                total_path=self._total_path,
                params=params,
                method=config.method,
                body=config.body,
            )
        )
        return builder.build(full=not incremental, total_reported=total)

    async def close(self) -> None:
        await self.http.close()
