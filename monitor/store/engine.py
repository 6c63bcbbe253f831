"""The two database engines behind the store: one connection shape for SQLite and PostgreSQL.

Every module writes its SQL once, in SQLite's `?` / `?N` placeholder style, and runs it on the
connection the store hands out. On SQLite that is the aiosqlite connection itself (no layer, no cost on
the embedded path); on PostgreSQL it is `PgConnection`, which rewrites the placeholders for psycopg and
offers the few aiosqlite methods the store uses (`execute`, `executemany`, `execute_fetchall`,
`total_changes`, `in_transaction`, cursors with `rowcount` that iterate asynchronously).

Only placeholders are rewritten: where the engines' SQL really differs (upserts that need
`FOR UPDATE SKIP LOCKED`, JSON, scalar `max`), a module keeps both statements side by side and picks one
with `store.dialect` (see `pick`).

Why psycopg 3 rather than asyncpg: the store's code is DB-API shaped (cursors, `rowcount` summed over
`executemany`, positional parameters), which psycopg keeps and asyncpg does not (no rowcount for
`executemany`, `$n` only, its own record type); psycopg's binary wheel needs no compiler, and its loader
hooks let NUMERIC come back as int/float so aggregate sums mix with Python numbers as SQLite's do.
"""

from __future__ import annotations

import asyncio
import math
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final, Literal

import psycopg
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus
from psycopg.types.numeric import Int8Dumper

__all__ = [
    "DB_ERRORS",
    "DEFAULT_CONNECT_TIMEOUT",
    "POSTGRESQL",
    "SQLITE",
    "UNAVAILABLE_ERRORS",
    "Dialect",
    "PgConnection",
    "connect_postgres",
    "connect_timeout_seconds",
    "dialect_of",
    "lock_key",
    "pick",
    "postgres_sql",
]

Dialect = Literal["sqlite", "postgresql"]
SQLITE: Final = "sqlite"
POSTGRESQL: Final = "postgresql"

# Any failure of the database itself (not of our arguments): what the write path retries.
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
# The database cannot take work right now (locked, full, unreachable, restarting): try again later.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (sqlite3.OperationalError, psycopg.OperationalError)

# Seconds a connection attempt may take (TCP, TLS, start-up, authentication) unless `store.connect_timeout`
# says otherwise: a host that drops packets, or accepts and never answers, fails start-up and CLI commands
# in this long rather than hanging them.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0

# Seconds a writer waits for the server to learn whether a COMMIT it lost the answer to went through.
_OUTCOME_PATIENCE = 60.0

_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\?(\d*)|%")


def dialect_of(conn: object) -> Dialect:
    """The engine behind a connection the store handed out."""
    return POSTGRESQL if isinstance(conn, PgConnection) else SQLITE


def lock_key(name: str) -> str:
    """SQL for an advisory lock key: `name` within the current schema, so deployments never collide."""
    return f"hashtextextended(current_schema() || ':{name}', 0)"


def pick(dialect: str, *, sqlite: str, postgresql: str) -> str:
    """One statement of two written side by side, for the engine in use."""
    return postgresql if dialect == POSTGRESQL else sqlite


@lru_cache(maxsize=2048)
def postgres_sql(sql: str) -> tuple[str, bool]:
    """`sql` with `?` as `%s`, `?N` as `%(pN)s` and `%` doubled; whether it uses numbered parameters.

    Quoted strings and comments are left as they are (apart from `%`, which psycopg reads everywhere).
    """
    numbered = False

    def replace(match: re.Match[str]) -> str:
        nonlocal numbered
        text = match.group(0)
        if text == "%":
            return "%%"
        if text.startswith("?"):
            if match.group(1):
                numbered = True
                return f"%(p{match.group(1)})s"
            return "%s"
        return text.replace("%", "%%")

    return _PLACEHOLDER.sub(replace, sql), numbered


def _params(params: Sequence[Any] | Mapping[str, Any] | None, numbered: bool) -> Any:
    if params is None:
        return None
    if numbered and not isinstance(params, Mapping):
        return {f"p{index}": value for index, value in enumerate(params, start=1)}
    return params


class _NumericLoader(Loader):
    """NUMERIC (what PostgreSQL's sum() and avg() of integers give) as int or float, like SQLite."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        if "." in text or "e" in text.lower() or text in ("NaN", "Infinity", "-Infinity"):
            return float(text)
        return int(text)


class _BoolAsIntDumper(Int8Dumper):
    """Python bools into the INTEGER flag columns both engines share (PostgreSQL refuses a boolean)."""

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class PgCursor:
    """The result of one statement: rows already fetched, `rowcount`, async iteration (aiosqlite's shape)."""

    __slots__ = ("_index", "_rows", "lastrowid", "rowcount")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self._index = 0
        self.rowcount = rowcount
        # PostgreSQL has no rowid: use `INSERT ... RETURNING id` (both engines read it the same way).
        self.lastrowid = None

    async def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows[self._index :], []
        return rows

    async def fetchone(self) -> tuple[Any, ...] | None:
        if self._index >= len(self._rows):
            return None
        self._index += 1
        return self._rows[self._index - 1]

    async def close(self) -> None:
        self._rows = []

    def __aiter__(self) -> AsyncIterator[tuple[Any, ...]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[Any, ...]]:
        while (row := await self.fetchone()) is not None:
            yield row

    async def __aenter__(self) -> PgCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _Pending:
    """`conn.execute(...)` is both awaitable and an async context manager, as in aiosqlite."""

    __slots__ = ("_coro", "_cursor")

    def __init__(self, coro: Any) -> None:
        self._coro = coro
        self._cursor: PgCursor | None = None

    def __await__(self) -> Any:
        return self._coro.__await__()

    async def __aenter__(self) -> PgCursor:
        self._cursor = await self._coro
        return self._cursor

    async def __aexit__(self, *exc_info: object) -> None:
        if self._cursor is not None:
            await self._cursor.close()


class PgConnection:
    """A psycopg async connection in autocommit mode, wearing the aiosqlite methods the store uses.

    Transactions are explicit `BEGIN` ... `COMMIT` statements, as on SQLite, so `store.transaction()`
    is the same code on both engines.
    """

    dialect: Final = POSTGRESQL

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        reconnect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]] | None = None,
    ) -> None:
        self.raw = conn
        self.total_changes = 0
        self.reconnects = 0
        self._reconnect = reconnect
        # Inside BEGIN ... COMMIT/ROLLBACK: a connection lost there is never replaced mid-transaction.
        self._explicit = False
        # A reader's statement found its connection lost runs again once on a new one: reads repeat
        # safely; a writer's statement never does (it may have committed before the connection went).
        self.retry_lost = False
        # The writer's open transaction id (PostgreSQL's xid8, as text): a COMMIT whose answer the lost
        # connection took with it is looked up by id, so a committed batch is never written twice.
        self._xid: str | None = None
        # False while something rides on this very session (a session advisory lock, e.g. while
        # migrating): losing the connection then must fail, not silently continue on a new session.
        self.reconnect_enabled = True

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def closed(self) -> bool:
        """Closed by us, or lost (server restart, network cut): psycopg marks such a connection broken."""
        return bool(self.raw.closed or self.raw.broken)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> _Pending:
        return _Pending(self._execute(sql, params))

    async def _ready(self, sql: str) -> bool:
        """Replace a connection the server or network dropped, between transactions only.

        False: the statement is a ROLLBACK of a transaction the dead connection took with it (the server
        rolled it back already). Inside a transaction a lost connection stays an error: the rest of a
        transaction must never run on a fresh connection in autocommit mode.
        """
        head = sql.lstrip()[:8].upper()
        if head.startswith("BEGIN"):
            self._explicit = True
        elif head.startswith(("COMMIT", "ROLLBACK")):
            was, self._explicit = self._explicit, False
            if self.closed and was and head.startswith("ROLLBACK"):
                return False
        if not self.closed:
            return True
        if (
            self._reconnect is None
            or not self.reconnect_enabled
            or (self._explicit and not head.startswith("BEGIN"))
        ):
            raise psycopg.OperationalError("the connection to the store was lost")
        # Raises OperationalError while the server stays unreachable: the caller retries later.
        self.raw = await self._reconnect()
        self.reconnects += 1
        return True

    async def _execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> PgCursor:
        if self._reconnect is None or not self.reconnect_enabled:
            return await self._execute_once(sql, params)
        if self.retry_lost:
            if self._explicit:
                return await self._execute_once(sql, params)
            try:
                return await self._execute_once(sql, params)
            except psycopg.OperationalError:
                if not self.closed:
                    raise
                return await self._execute_once(sql, params)
        head = sql.lstrip()[:8].upper()
        if head.startswith("BEGIN"):
            try:
                cursor = await self._execute_once(sql, params)
            except psycopg.OperationalError:
                # Found dead at the first statement (server restarted while idle): nothing ran yet.
                if not self.closed:
                    raise
                self._explicit = False
                cursor = await self._execute_once(sql, params)
            rows = await (await self._execute_once("SELECT pg_current_xact_id()::text", None)).fetchall()
            self._xid = rows[0][0]
            return cursor
        if head.startswith("COMMIT") and self._xid is not None:
            xid, self._xid = self._xid, None
            try:
                return await self._execute_once(sql, params)
            except psycopg.OperationalError:
                if not self.closed or await self._outcome(xid) != "committed":
                    raise
                return PgCursor([], 0)
        if head.startswith("ROLLBACK"):
            self._xid = None
        return await self._execute_once(sql, params)

    async def _outcome(self, xid: str) -> str | None:
        """What became of transaction `xid` whose COMMIT lost its connection: "committed", "aborted", or
        None when the server stayed unreachable for a minute (the caller then retries, as for a failure).

        Waits for the server (the writer holds its lock meanwhile; probe results keep buffering): retrying
        a batch that did commit would count its rollups twice.
        """
        reconnect = self._reconnect
        if reconnect is None:
            return None
        delay = 0.05
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _OUTCOME_PATIENCE
        while True:
            try:
                if self.closed:
                    self.raw = await reconnect()
                    self.reconnects += 1
                cursor = await self._execute_once("SELECT pg_xact_status(?::xid8)", (xid,))
                rows = await cursor.fetchall()
                status = str(rows[0][0]) if rows and rows[0][0] is not None else None
                # The old backend may not have noticed its client is gone yet: ask until it ends.
                if status != "in progress" or loop.time() >= give_up:
                    return status
                await asyncio.sleep(0.05)
            except psycopg.OperationalError:
                if loop.time() >= give_up:
                    return None
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def _execute_once(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> PgCursor:
        if not await self._ready(sql):
            return PgCursor([], 0)
        # Without parameters psycopg sends the text as it is: nothing to rewrite (scripts, DDL).
        text, numbered = (sql, False) if params is None else postgres_sql(sql)
        async with self.raw.cursor() as cursor:
            await cursor.execute(text, _params(params, numbered))
            rows = await cursor.fetchall() if cursor.description is not None else []
            rowcount = cursor.rowcount
        if (rowcount > 0 and cursor.description is None) or (rowcount > 0 and _writes(text)):
            self.total_changes += rowcount
        return PgCursor(rows, rowcount)

    async def executemany(self, sql: str, seq: Iterable[Sequence[Any] | Mapping[str, Any]]) -> PgCursor:
        text, numbered = postgres_sql(sql)
        values = [_params(params, numbered) for params in seq]
        if not values:
            return PgCursor([], 0)
        await self._ready(sql)
        async with self.raw.cursor() as cursor:
            await cursor.executemany(text, values)
            rowcount = cursor.rowcount
        if rowcount > 0:
            self.total_changes += rowcount
        return PgCursor([], rowcount)

    async def execute_fetchall(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        cursor = await self._execute(sql, params)
        return await cursor.fetchall()

    async def close(self) -> None:
        await self.raw.close()

    def __repr__(self) -> str:
        return f"PgConnection({self.raw.info.host}:{self.raw.info.port}/{self.raw.info.dbname})"


def _writes(sql: str) -> bool:
    head = sql.lstrip()[:6].upper()
    return head in ("INSERT", "UPDATE", "DELETE")


async def connect_postgres(
    url: str,
    *,
    application_name: str = "tthc-monitor",
    schema: str | None = None,
    readonly: bool = False,
    reconnect: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> PgConnection:
    """An autocommit connection to `url`, its loaders set up; `schema` (tests) becomes the search path.

    `reconnect`: a connection found closed (server restart, network cut) is opened again before the
    next statement outside a transaction, so a store keeps working once the server is back.
    `connect_timeout`: seconds each attempt may take before `psycopg.errors.ConnectionTimeout`.
    """
    raw = await _connect_raw(url, application_name, schema, readonly, connect_timeout)

    async def again() -> psycopg.AsyncConnection[Any]:
        return await _connect_raw(url, application_name, schema, readonly, connect_timeout)

    return PgConnection(raw, again if reconnect else None)


def connect_timeout_seconds(seconds: float) -> int:
    """libpq's `connect_timeout`: whole seconds, at least 2 (libpq and psycopg raise anything lower)."""
    return max(2, math.ceil(seconds))


async def _connect_raw(
    url: str, application_name: str, schema: str | None, readonly: bool, connect_timeout: float
) -> psycopg.AsyncConnection[Any]:
    options: dict[str, Any] = {
        "autocommit": True,
        "application_name": application_name,
        # An unreachable server fails the attempt (retried later) instead of hanging the writer. It
        # overrides a `connect_timeout` written in the URL: the config says how long start-up may wait.
        "connect_timeout": connect_timeout_seconds(connect_timeout),
    }
    settings = []
    if schema:
        settings.append(f"-c search_path={schema}")
    if readonly:
        settings.append("-c default_transaction_read_only=on")
    if settings:
        options["options"] = " ".join(settings)
    raw = await psycopg.AsyncConnection.connect(url, **options)
    raw.adapters.register_loader("numeric", _NumericLoader)
    raw.adapters.register_dumper(bool, _BoolAsIntDumper)
    return raw
