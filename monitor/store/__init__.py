"""Durable history of probe results, rollups, incidents and uptime, behind the `Store` protocol."""

from __future__ import annotations

from monitor.store.base import Incident, ProbeResult, Store, StoreError, UptimeReport
from monitor.store.postgres import PostgresStore
from monitor.store.sql import SqlStore
from monitor.store.sqlite import SqliteStore

__all__ = [
    "Incident",
    "PostgresStore",
    "ProbeResult",
    "SqlStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "UptimeReport",
]
