"""The shared engine: PostgreSQL, for replicas that share one database (and for stores past one disk).

Connections are psycopg 3 in autocommit mode wearing aiosqlite's methods (engine.PgConnection), so the
store's SQL and transactions are the same code as on SQLite. Migrations run under a session advisory
lock keyed by the schema, so replicas starting together migrate once and the others wait, then find
nothing to do. `schema` (default: the server's search path) lets several deployments, or tests, share
one database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from monitor.store.base import StoreError
from monitor.store.engine import (
    DEFAULT_CONNECT_TIMEOUT,
    POSTGRESQL,
    PgConnection,
    connect_postgres,
    connect_timeout_seconds,
    lock_key,
)
from monitor.store.migrations import Migration, apply_migrations, check_version, schema_version
from monitor.store.sql import SqlStore

__all__ = ["PostgresEngine", "PostgresStore", "describe_url", "lock_key"]

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def describe_url(url: str) -> str:
    """Where a URL points, without its password: for logs, errors and `repr`."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable URL)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"postgresql://{parts.get('user') or ''}@{host}:{port}/{parts.get('dbname') or ''}"


class PostgresEngine:
    """Connections to one PostgreSQL database (the `Engine` of sql.py)."""

    dialect = POSTGRESQL
    begin = "BEGIN"

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        application_name: str = "tthc-monitor",
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        if schema is not None and not _SCHEMA.match(schema):
            raise ValueError(f"schema {schema!r}: lower-case letters, digits and _ only")
        self.url = url
        self.schema = schema
        self.application_name = application_name
        # Seconds one connection attempt may take (store.connect_timeout); replicas' own connections
        # (leadership, keepalive) use it too.
        self.connect_timeout = connect_timeout

    def describe(self) -> str:
        where = describe_url(self.url)
        return f"{where} (schema {self.schema})" if self.schema else where

    async def _connect(self, *, readonly: bool = False) -> PgConnection:
        try:
            return await connect_postgres(
                self.url,
                application_name=self.application_name,
                schema=self.schema,
                readonly=readonly,
                reconnect=True,
                connect_timeout=self.connect_timeout,
            )
        except psycopg.errors.ConnectionTimeout as exc:
            # psycopg says only "connection timeout expired": say after how long, and what sets it.
            raise StoreError(
                f"cannot connect to {describe_url(self.url)}: no answer within"
                f" {connect_timeout_seconds(self.connect_timeout)}s (store.connect_timeout)"
            ) from exc
        except psycopg.OperationalError as exc:
            # The server's message names host and user, never the password.
            raise StoreError(f"cannot connect to {describe_url(self.url)}: {_first_line(exc)}") from exc

    async def open_writer(
        self, migrations: Sequence[Migration], *, migrate: bool
    ) -> tuple[PgConnection, list[int]]:
        writer = await self._connect()
        try:
            applied = await self.migrate(writer, migrations) if migrate else []
            if not migrate:
                check_version(await schema_version(writer), migrations, self.describe())
        except BaseException:
            await writer.close()
            raise
        return writer, applied

    async def migrate(self, conn: PgConnection, migrations: Sequence[Migration]) -> list[int]:
        """Apply what is missing, holding the migration lock: one replica migrates, the others wait."""
        if self.schema:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        # The lock lives in this session: a lost connection must fail the migration, not go on unlocked.
        conn.reconnect_enabled = False
        try:
            await conn.execute(f"SELECT pg_advisory_lock({lock_key('migrate')})")
            try:
                return await apply_migrations(conn, migrations)
            finally:
                await conn.execute(f"SELECT pg_advisory_unlock({lock_key('migrate')})")
        finally:
            conn.reconnect_enabled = True

    async def open_reader(self) -> PgConnection:
        reader = await self._connect()
        reader.retry_lost = True
        return reader

    async def open_readonly(self, migrations: Sequence[Migration]) -> PgConnection:
        reader = await self._connect(readonly=True)
        reader.retry_lost = True
        try:
            check_version(await schema_version(reader), migrations, self.describe())
        except BaseException:
            await reader.close()
            raise
        return reader

    async def power_safe(self, conn: Any, on: bool) -> None:
        # Every commit is durable already (synchronous_commit is on by default).
        return None

    async def reclaim(self, conn: Any) -> None:
        # Autovacuum hands space back to the table; nothing to do by hand.
        return None

    async def close(self, conn: Any) -> None:
        await conn.close()


class PostgresStore(SqlStore):
    """The `Store` on a PostgreSQL database, shared by every replica that has the same `url`."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        **options: Any,
    ) -> None:
        super().__init__(PostgresEngine(url, schema=schema, connect_timeout=connect_timeout), **options)
        self.url = url

    @classmethod
    async def open_readonly(
        cls, url: str, *, schema: str | None = None, clock: Callable[[], datetime] | None = None
    ) -> PostgresStore:
        """An opened read-only store (no writer, no migrations), for the CLI while replicas run."""
        store = cls(url, schema=schema, clock=clock, readonly=True)
        await store.open()
        return store


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
