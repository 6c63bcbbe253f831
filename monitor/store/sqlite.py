"""The embedded engine: one SQLite file in WAL mode, a writer and a read-only reader connection.

The default for one machine. The file is created private to the daemon's user (files.py), tuned for
a write-ahead log that another process (the CLI, a backup) reads while the daemon writes, and migrated
on open. `SqliteStore` is the `SqlStore` (sql.py) on it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from monitor.store.base import StoreError
from monitor.store.engine import SQLITE
from monitor.store.facts import close_joined
from monitor.store.files import prepare_private_file
from monitor.store.migrations import Migration, apply_migrations, check_version, schema_version
from monitor.store.sql import SqlStore

__all__ = ["SqliteEngine", "SqliteStore"]


class SqliteEngine:
    """Connections to one SQLite file (the `Engine` of sql.py)."""

    dialect = SQLITE
    # Takes the write lock at once: a transaction that first reads and then writes cannot deadlock.
    begin = "BEGIN IMMEDIATE"

    def __init__(self, path: Path | str, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout

    def describe(self) -> str:
        return str(self.path)

    async def open_writer(
        self, migrations: Sequence[Migration], *, migrate: bool
    ) -> tuple[aiosqlite.Connection, list[int]]:
        prepare_private_file(self.path)
        writer = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await writer.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            rows = await writer.execute_fetchall("PRAGMA page_count")
            if next(iter(rows))[0] == 0:
                # Only settable before the first table; lets retention hand pages back to the disk.
                await writer.execute("PRAGMA auto_vacuum = INCREMENTAL")
            await writer.execute("PRAGMA journal_mode = WAL")
            await writer.execute("PRAGMA synchronous = NORMAL")
            await writer.execute("PRAGMA journal_size_limit = 67108864")
            if migrate:
                applied = await apply_migrations(writer, migrations)
            else:
                check_version(await schema_version(writer), migrations, str(self.path))
                applied = []
        except BaseException:
            await writer.close()
            raise
        return writer, applied

    async def open_reader(self) -> aiosqlite.Connection:
        return await self._connect_reader(self.path.resolve().as_uri())

    async def open_readonly(self, migrations: Sequence[Migration]) -> aiosqlite.Connection:
        if not self.path.is_file():
            raise StoreError(f"no store at {self.path}")
        reader = await self._connect_reader(self.path.resolve().as_uri() + "?mode=ro")
        try:
            try:
                version = await schema_version(reader)
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"{self.path} is not a tthc-monitor store ({exc}): check the path; if it is the "
                    "store, restore it from a backup"
                ) from exc
            if not version:
                raise StoreError(f"{self.path} has no store schema: start the daemon once to create it")
            check_version(version, migrations, str(self.path))
        except BaseException:
            await reader.close()
            raise
        return reader

    async def _connect_reader(self, uri: str) -> aiosqlite.Connection:
        reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        try:
            await reader.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            await reader.execute("PRAGMA query_only = 1")
        except BaseException:
            await reader.close()
            raise
        return reader

    async def power_safe(self, conn: Any, on: bool) -> None:
        # NORMAL may lose the last commits on power loss: fine for history, not for a single-use token.
        await conn.execute(f"PRAGMA synchronous = {'FULL' if on else 'NORMAL'}")

    async def reclaim(self, conn: Any) -> None:
        await conn.execute("PRAGMA incremental_vacuum(1000)")

    async def close(self, conn: Any) -> None:
        await close_joined(conn)


class SqliteStore(SqlStore):
    """The `Store` on one SQLite file. Use `async with SqliteStore(path) as store:` or open()/close()."""

    def __init__(self, path: Path | str, *, busy_timeout: float | timedelta = 5.0, **options: Any) -> None:
        seconds = busy_timeout.total_seconds() if isinstance(busy_timeout, timedelta) else float(busy_timeout)
        super().__init__(SqliteEngine(path, seconds), **options)
        self.path = Path(path)
        self.busy_timeout = seconds

    @classmethod
    async def open_readonly(
        cls, path: Path | str, *, clock: Callable[[], datetime] | None = None
    ) -> SqliteStore:
        """An opened read-only store (no writer, no migrations), for the CLI while the daemon runs."""
        store = cls(path, clock=clock, readonly=True)
        await store.open()
        return store
