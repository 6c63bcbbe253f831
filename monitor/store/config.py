"""The `store:` section: the embedded SQLite file or a shared PostgreSQL database; history kept."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from monitor.configtypes import (
    OFFLINE_SECRET,
    ConfigPath,
    PositiveDuration,
    StrictModel,
    raise_at,
    secret_file_fields,
)

__all__ = ["StoreConfig"]

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class StoreConfig(StrictModel):
    """The embedded SQLite store (`path`) or PostgreSQL (`url`), and how long each kind of history is kept."""

    _secret_files = secret_file_fields("url")

    path: ConfigPath = Field(
        default=Path("data/tthc-monitor.db"),
        description="the embedded SQLite store file (relative to the config file); not with url",
    )
    # postgresql://user:password@host:5432/dbname: replicas share it (README "Scale and high
    # availability"). A secret (it may hold the password): give it as `url_file` or ${VAR}.
    url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:password@host:5432/dbname: a shared PostgreSQL store instead of the "
        "SQLite file (a secret: prefer url_file or ${VAR})",
    )
    # The PostgreSQL schema the tables live in (created if missing); default: the server's search path.
    schema_name: str | None = Field(
        default=None,
        alias="schema",
        json_schema_extra={"pattern": _SCHEMA.pattern},
        description="PostgreSQL schema holding the tables (created if missing); default: the search path",
    )
    # Apply missing migrations at start (under an advisory lock on PostgreSQL). Off: start refuses an
    # older schema and `tthc-monitor migrate` applies it, for sites that migrate as a release step.
    auto_migrate: bool = Field(
        default=True,
        description="apply missing migrations at start; false: start refuses an older schema "
        "(run `tthc-monitor migrate`)",
    )
    # How long one attempt to connect to PostgreSQL may take (TCP, TLS, authentication): a host that drops
    # packets, or accepts and never answers, fails start-up and CLI commands in this long instead of
    # hanging them. Whole seconds, at least 2 (libpq's own floor).
    connect_timeout: PositiveDuration = Field(
        default=timedelta(seconds=10),
        description="PostgreSQL: how long one connection attempt may take before it fails (at least 2s)",
    )
    raw_retention: PositiveDuration = timedelta(days=7)
    minute_retention: PositiveDuration = timedelta(days=90)
    hour_retention: PositiveDuration = timedelta(days=730)
    flush_interval: PositiveDuration = timedelta(seconds=1)
    # Successful results that change nothing are folded into rollups, but one is still written this
    # often per target so the raw table shows the target was being watched.
    success_sample_interval: PositiveDuration = timedelta(minutes=5)
    # How long one write waits for a lock held by another process (a backup, an admin's sqlite3 shell)
    # before it fails and is retried; the probe path never waits on it.
    busy_timeout: PositiveDuration = timedelta(seconds=5)
    # Raw probe rows kept in memory while the store cannot be written; past it, new raw samples are
    # dropped (counted) while rollups, health and every durable fact are still kept.
    raw_backlog_limit: int = Field(default=200_000, ge=1000)
    # How often the daemon records that it is still running: uptime counts only time it was running,
    # and a crash loses at most this much of it.
    heartbeat_interval: PositiveDuration = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        # `check-config --offline` does not read url_file: there is no URL to check yet.
        if value.get_secret_value() == OFFLINE_SECRET:
            return value
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (leave it out for the embedded SQLite store)")
        return value

    @field_validator("connect_timeout")
    @classmethod
    def _connect_timeout(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=2):
            raise ValueError("must be at least 2s (PostgreSQL's client library waits no less)")
        return value

    @field_validator("schema_name")
    @classmethod
    def _schema_name(cls, value: str | None) -> str | None:
        if value is not None and not _SCHEMA.match(value):
            raise ValueError(
                f"{value!r} is not a schema name: lower-case letters, digits and _, not starting with a"
                " digit, at most 63"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_engine(cls, data: Any) -> Any:
        # A path left at its default is no choice; one written next to a URL is a config that names two
        # stores, and guessing which one holds the history would lose the other's.
        if (
            isinstance(data, dict)
            and data.get("path") not in (None, "")
            and (data.get("url") not in (None, "") or "url_file" in data)
        ):
            key = "url" if data.get("url") not in (None, "") else "url_file"
            raise_at(
                [
                    (
                        (key,),
                        "given with store.path: name one store, the PostgreSQL URL or the SQLite file"
                        " (remove store.path to use PostgreSQL)",
                    )
                ]
            )
        return data

    @property
    def engine(self) -> str:
        """ "postgresql" when `url` is set, else "sqlite"."""
        return "postgresql" if self.url is not None else "sqlite"
