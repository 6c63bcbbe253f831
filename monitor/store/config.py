"""The `store:` section: where the embedded SQLite store lives and how long each kind of history is kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from monitor.configtypes import ConfigPath, PositiveDuration, StrictModel

__all__ = ["StoreConfig"]


class StoreConfig(StrictModel):
    """The embedded SQLite store and how long each kind of history is kept."""

    path: ConfigPath = Path("data/tthc-monitor.db")
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
