"""The `replicas:` section: how long a silent member keeps its share, and what this member is called."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import ValidationInfo, field_validator

from monitor.configtypes import Duration, PositiveDuration, StrictModel

__all__ = ["ReplicasConfig"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Heartbeats go every lease/3; below a second they would be most of the store's transactions.
_MIN_LEASE = timedelta(seconds=1)


class ReplicasConfig(StrictModel):
    """Only used with a PostgreSQL store (`store.url`); with SQLite the one process does everything."""

    # A member silent this long (no heartbeat in the database) loses its targets and sources.
    lease: PositiveDuration = timedelta(seconds=10)
    # Shown in logs, metrics and the member table; default host-pid. A random suffix is always added,
    # so a restarted member is a new member and its predecessor's row simply expires.
    name: str | None = None
    # At start, how long to wait for the other members to join before taking any work (heartbeating
    # meanwhile). Members started together (compose, a rolling restart) then split the sources at once,
    # instead of the first syncing every source alone and handing most of them over a moment later.
    # 0s (the default) takes work at once: a lone daemon on PostgreSQL starts without delay.
    join_wait: Duration = timedelta(0)

    @field_validator("lease")
    @classmethod
    def _long_enough(cls, value: timedelta) -> timedelta:
        if value < _MIN_LEASE:
            raise ValueError("must be at least 1s (heartbeats go every lease/3)")
        return value

    @field_validator("join_wait")
    @classmethod
    def _shorter_than_the_lease(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        lease = info.data.get("lease")
        if lease is not None and value >= lease:
            raise ValueError(f"must be shorter than replicas.lease ({lease.total_seconds():g}s)")
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid replica name (letters, digits, '_', '.', '-'; at most 63)"
            )
        return value
