"""Building the store the config names: the embedded SQLite file, or PostgreSQL for replicas."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from monitor.store.postgres import PostgresStore
from monitor.store.sql import SqlStore
from monitor.store.sqlite import SqliteStore
from monitor.supervisor import Supervisor

if TYPE_CHECKING:
    from monitor.store.config import StoreConfig

__all__ = ["open_readonly_store", "store_from_config"]


def store_from_config(
    config: StoreConfig,
    *,
    clock: Callable[[], datetime] | None = None,
    supervisor: Supervisor | None = None,
    readonly: bool = False,
) -> SqlStore:
    """A store set up from the `store:` section (not opened yet)."""
    options = {
        "raw_retention": config.raw_retention,
        "minute_retention": config.minute_retention,
        "hour_retention": config.hour_retention,
        "flush_interval": config.flush_interval,
        "success_sample_interval": config.success_sample_interval,
        "raw_backlog_limit": config.raw_backlog_limit,
        "auto_migrate": config.auto_migrate,
        "supervisor": supervisor,
        "clock": clock,
        "readonly": readonly,
    }
    if config.url is not None:
        return PostgresStore(
            config.url.get_secret_value(),
            schema=config.schema_name,
            connect_timeout=config.connect_timeout.total_seconds(),
            **options,
        )
    return SqliteStore(config.path, busy_timeout=config.busy_timeout, **options)


async def open_readonly_store(
    config: StoreConfig, *, clock: Callable[[], datetime] | None = None
) -> SqlStore:
    """An opened read-only store (no writer, no migrations), for the CLI while the daemon runs."""
    store = store_from_config(config, clock=clock, readonly=True)
    await store.open()
    return store
