"""Both store engines for the tests: the embedded SQLite file and a PostgreSQL schema per test.

Tests that touch the store take the `stores` fixture (conftest.py), parametrised over the two engines,
and build stores with `stores.new(path, **options)`: on SQLite `path` is the file; on PostgreSQL the
same path names the same fresh schema, so a test that reopens "its file" reopens its schema.

PostgreSQL comes from TTHC_TEST_POSTGRES_URL (`.ci/run` starts a throwaway cluster and sets it). Without
it those tests skip, saying why; with TTHC_REQUIRE_POSTGRES=1 (CI) they fail instead, so CI never skips.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from monitor.store import PostgresStore, SqliteStore, SqlStore
from monitor.store.engine import postgres_sql

__all__ = ["ENGINES", "StoreFactory", "postgres_url", "require_postgres"]

ENGINES = ("sqlite", "postgresql")
_SCHEMA_PREFIX = "t_"


def postgres_url() -> str | None:
    return os.environ.get("TTHC_TEST_POSTGRES_URL") or None


def require_postgres() -> str:
    """The test server's URL, or skip (fail under TTHC_REQUIRE_POSTGRES=1) when there is none."""
    url = postgres_url()
    if url is None:
        reason = "PostgreSQL not available: set TTHC_TEST_POSTGRES_URL (.ci/run starts a throwaway cluster)"
        if os.environ.get("TTHC_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


class StoreFactory:
    """Stores of one engine for one test; PostgreSQL schemas are dropped when the test ends."""

    def __init__(self, engine: str, test_id: str) -> None:
        self.engine = engine
        self.url = require_postgres() if engine == "postgresql" else None
        # Unique per run: two checkouts may run the same test against one server at the same time.
        self._test = hashlib.blake2b(f"{test_id}:{uuid.uuid4()}".encode(), digest_size=6).hexdigest()
        self._schemas: set[str] = set()

    @property
    def postgres(self) -> bool:
        return self.engine == "postgresql"

    def schema(self, path: Path | str) -> str:
        """The PostgreSQL schema standing for the SQLite file `path` in this test."""
        name = re.sub(r"[^a-z0-9_]", "_", Path(path).name.lower())[:24]
        digest = hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()
        schema = f"{_SCHEMA_PREFIX}{self._test}_{digest}_{name}"[:63]
        self._schemas.add(schema)
        return schema

    def new(self, path: Path | str, **options: Any) -> SqlStore:
        """A store (not opened) at `path` on this factory's engine."""
        if self.url is None:
            return SqliteStore(path, **options)
        options.pop("busy_timeout", None)
        return PostgresStore(self.url, schema=self.schema(path), **options)

    async def open_readonly(self, path: Path | str, **options: Any) -> SqlStore:
        """An opened read-only store on the same database as `new(path)` (the CLI's view)."""
        if self.url is None:
            return await SqliteStore.open_readonly(path, **options)
        return await PostgresStore.open_readonly(self.url, schema=self.schema(path), **options)

    def connect(self, path: Path | str) -> Any:
        """A plain synchronous connection to `path`'s database (sqlite3, or psycopg in its schema),
        autocommit, for inspecting or tampering with the schema the way an operator's shell would."""
        if self.url is None:
            return sqlite3.connect(path, isolation_level=None)
        return psycopg.connect(self.url, autocommit=True, options=f"-c search_path={self.schema(path)}")

    def has_table(self, path: Path | str, name: str) -> bool:
        """Whether `path`'s database holds a table (or index) called `name`."""
        conn = self.connect(path)
        try:
            if self.url is None:
                sql = f"SELECT 1 FROM sqlite_master WHERE name = '{name}'"
            else:
                sql = f"SELECT to_regclass('{self.schema(path)}.{name}')"
            row = conn.execute(sql).fetchone()
        finally:
            conn.close()
        return row is not None and row[0] is not None

    def config(self, path: Path | str) -> dict[str, Any]:
        """The `store:` section of a daemon config for a store at `path` (subprocess tests)."""
        if self.url is None:
            return {"path": str(path)}
        return {"url": self.url, "schema": self.schema(path)}

    def query(self, path: Path | str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of `sql` (`?` placeholders) read through a connection of its own: only what is committed."""
        if self.url is None:
            with contextlib.closing(sqlite3.connect(path)) as conn:
                return conn.execute(sql, params).fetchall()
        options = f"-c search_path={self.schema(path)}"
        # The store's own placeholder rewriting: `?` as `%s`, and a `%` (a LIKE pattern) doubled.
        text, _numbered = postgres_sql(sql)
        with psycopg.connect(self.url, autocommit=True, options=options) as pg:
            return pg.execute(text, params).fetchall()

    def drop(self) -> None:
        if self.url is None or not self._schemas:
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            for schema in sorted(self._schemas):
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
