"""What the daemon probes: target models (HTTP, TCP), their TLS and content expectations, maintenance
windows. Kept apart from `monitor.config` so that probes can import them without importing every other
config section.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from monitor.configtypes import ConfigPath, PositiveDuration, StrictModel, reads_files, register_union_tags
from monitor.durations import format_duration

__all__ = [
    "TARGET_TYPES",
    "HttpExpect",
    "HttpTarget",
    "MaintenanceWindow",
    "Target",
    "TcpTarget",
    "TlsConfig",
    "zone_named",
]


def zone_named(name: str) -> ZoneInfo:
    """The zone, or ValueError with a short message for a config error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


class TlsConfig(StrictModel):
    """TLS settings of a probe. Vietnamese government CAs are often missing from default bundles."""

    verify: bool = True
    ca_file: ConfigPath | None = None
    server_name: str | None = None
    # A certificate with fewer days left than this makes the target DEGRADED (cert_expiring); 0 = off.
    min_cert_days: int = Field(default=14, ge=0)

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and reads_files() and not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value


_STATUS_CLASS = re.compile(r"^[1-5]xx$")


class HttpExpect(StrictModel):
    """What a healthy reply looks like. A maintenance page served with 200 must fail these."""

    status: list[int | str] = Field(default_factory=lambda: ["2xx"])
    body_contains: list[str] = Field(default_factory=list)
    body_not_contains: list[str] = Field(default_factory=list)
    body_matches: list[str] = Field(default_factory=list)
    body_not_matches: list[str] = Field(default_factory=list)

    @field_validator("status")
    @classmethod
    def _valid_status(cls, values: list[int | str]) -> list[int | str]:
        if not values:
            raise ValueError("must list at least one status code")
        for value in values:
            if isinstance(value, int) and not 100 <= value <= 599:
                raise ValueError(f"{value} is not an HTTP status code (100-599)")
            if isinstance(value, str) and not _STATUS_CLASS.match(value):
                raise ValueError(f"{value!r} is not a status code or a class like 2xx")
        return values

    @field_validator("body_matches", "body_not_matches")
    @classmethod
    def _valid_regex(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return patterns

    def status_ok(self, status: int) -> bool:
        return any(
            status == value if isinstance(value, int) else status // 100 == int(value[0])
            for value in self.status
        )


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MaintenanceWindow(StrictModel):
    """A planned outage: one-off (`start: 2026-12-05 22:00`) or weekly (`days: [sun]`, `start: "22:00"`).

    Results inside a window are stored and marked but open no incident and do not count against uptime.
    Times are in the window's `timezone`, else the config's.
    """

    start: str
    duration: PositiveDuration
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    timezone: str | None = None
    reason: str = ""

    @model_validator(mode="after")
    def _valid_start(self) -> MaintenanceWindow:
        if self.days is not None:
            if not self.days:
                raise ValueError("days must list at least one weekday")
            try:
                time.fromisoformat(self.start)
            except ValueError as exc:
                raise ValueError(f"start {self.start!r} must be a time of day like 22:00") from exc
        else:
            try:
                datetime.fromisoformat(self.start)
            except ValueError as exc:
                raise ValueError(
                    f"start {self.start!r} must be a date and time like 2026-12-05 22:00"
                ) from exc
        if self.timezone is not None:
            zone_named(self.timezone)
        return self

    @property
    def weekday_numbers(self) -> frozenset[int]:
        return frozenset(_WEEKDAYS.index(day) for day in self.days or ())


_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class _TargetBase(StrictModel):
    name: str
    interval: PositiveDuration = timedelta(seconds=30)
    timeout: PositiveDuration = timedelta(seconds=10)
    failure_threshold: int = Field(default=3, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    # Above this the target is DEGRADED (reason slow) even though the probe succeeded.
    max_latency: PositiveDuration | None = None
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    # Part of the provincial dossier system: its incidents count when a dossier turns overdue.
    dossier_system: bool = True

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _TARGET_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid target name (letters, digits, '_', '.', '-'; at most 63)"
            )
        return value

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> _TargetBase:
        if self.timeout > self.interval:
            # Name the values, and say which one the user did not write: a default is easy to miss.
            timeout, interval = (
                f"{name} {format_duration(getattr(self, name).total_seconds())}"
                + ("" if name in self.model_fields_set else " (default)")
                for name in ("timeout", "interval")
            )
            raise ValueError(f"{timeout} must not be longer than {interval}")
        return self


class HttpTarget(_TargetBase):
    """An HTTP(S) check: status, body content, latency, certificate expiry, per-phase timings."""

    type: Literal["http"]
    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    max_redirects: int = Field(default=5, ge=0, le=30)
    expect: HttpExpect = HttpExpect()
    tls: TlsConfig = TlsConfig()

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class TcpTarget(_TargetBase):
    """A TCP connect check (optionally TLS), e.g. the dossier system's database port."""

    type: Literal["tcp"]
    host: str
    port: int = Field(ge=1, le=65535)
    # Present = connect with TLS and check the certificate.
    tls: TlsConfig | None = None


Target = Annotated[HttpTarget | TcpTarget, Field(discriminator="type")]
TARGET_TYPES = ("http", "tcp")
register_union_tags(*TARGET_TYPES)
