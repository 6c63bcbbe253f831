"""The `store:` section: the embedded SQLite file or a shared PostgreSQL database; history kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from monitor.configtypes import OFFLINE_SECRET, ConfigPath, PositiveDuration, StrictModel, secret_file_fields

__all__ = ["StoreConfig"]


class StoreConfig(StrictModel):
    """The embedded SQLite store (`path`) or PostgreSQL (`url`), and how long each kind of history is kept."""

    _secret_files = secret_file_fields("url")

    path: ConfigPath = Path("data/tthc-monitor.db")
    # postgresql://user:password@host:5432/dbname: replicas share it (README "Scale and high
    # availability"). A secret (it may hold the password): give it as `url_file` or ${VAR}.
    url: SecretStr | None = None
    # The PostgreSQL schema the tables live in (created if missing); default: the server's search path.
    schema_name: str | None = Field(default=None, alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Apply missing migrations at start (under an advisory lock on PostgreSQL). Off: start refuses an
    # older schema and `tthc-monitor migrate` applies it, for sites that migrate as a release step.
    auto_migrate: bool = True
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

    @property
    def engine(self) -> str:
        """ "postgresql" when `url` is set, else "sqlite"."""
        return "postgresql" if self.url is not None else "sqlite"
