"""The dossier source contract, and the settings every source (and every HTTP source) has.

A fetch either returns a complete `SyncBatch` or raises `SyncError`: never a partial batch, because the
sync manager would take every dossier missing from a partial listing as gone. The HTTP side sources
share is in `fetcher.py` (requests, retries, redirects), `auth.py`, `paging.py` and `listing.py`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from pydantic import ByteSize, Field, field_validator
from yarl import URL

from monitor.configtypes import Duration, PositiveDuration, StrictModel
from monitor.dossiers.model import SyncBatch

from .replies import DEFAULT_MAX_REPLY_BYTES, origin_of

__all__ = ["DossierSource", "HttpSourceConfigBase", "SourceConfigBase"]


@runtime_checkable
class DossierSource(Protocol):
    """Where dossiers come from. `fetch(since=None)` is a full listing (`batch.full`)."""

    name: str
    type: str
    supports_incremental: bool

    async def fetch(self, *, since: datetime | None) -> SyncBatch: ...

    async def close(self) -> None: ...


class SourceConfigBase(StrictModel):
    """Settings every dossier source has."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    # Incremental sync (modified since the last one) and full reconcile periods.
    interval: PositiveDuration = timedelta(minutes=2)
    full_interval: PositiveDuration = timedelta(minutes=30)
    # Per request (one page), not for the whole listing.
    timeout: PositiveDuration = timedelta(seconds=30)
    page_size: int = Field(default=500, ge=1, le=10_000)
    timezone: str = "Asia/Ho_Chi_Minh"
    # Attempts per page before the sync fails, and the first backoff delay (doubles, with jitter).
    attempts: int = Field(default=3, ge=1, le=10)
    retry_wait: Duration = timedelta(seconds=0.5)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class HttpSourceConfigBase(SourceConfigBase):
    """Settings every source read over HTTP has: how big a reply may be and where paging may lead."""

    # Largest reply accepted ("32MiB", "500KB" or bytes); a bigger one fails the sync (no retry).
    max_reply_bytes: ByteSize = Field(default=ByteSize(DEFAULT_MAX_REPLY_BYTES), ge=1024)
    # Other origins (https://host[:port]) that next links and redirects may lead to. Credentials are
    # never sent there: only the listing's own origin gets them.
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        origins = []
        for value in values:
            parsed = URL(value) if value.startswith(("http://", "https://")) else None
            bare = parsed is not None and bool(parsed.host) and parsed.path in ("", "/")
            if not bare or parsed is None or parsed.query_string or parsed.fragment or parsed.user:
                raise ValueError(
                    f"{value!r} is not an origin like https://api.example.vn or http://host:8080"
                )
            origins.append(origin_of(parsed))
        return origins
