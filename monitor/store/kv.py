"""Key-value state: small durable values (tokens, cursors) in the `kv` table, the same on both engines."""

from __future__ import annotations

from typing import Any

__all__ = ["read_value", "write_value"]


async def read_value(reader: Any, key: str) -> str | None:
    """The value stored under `key`, or None."""
    rows = await reader.execute_fetchall("SELECT value FROM kv WHERE key = ?", (key,))
    return rows[0][0] if rows else None


async def write_value(conn: Any, key: str, value: str, now_ms: int) -> None:
    """Insert or replace `key` inside the caller's transaction."""
    await conn.execute(
        "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key)"
        " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, value, now_ms),
    )
