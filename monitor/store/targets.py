"""Target ids: one `targets` row per monitored name, shared by every process writing the database.

Replicas write one PostgreSQL database at once, each owning different targets, and a target changes
owner on failover; so a new name is inserted with `ON CONFLICT (name) DO NOTHING` and every id is read
back afterwards, never assumed from our own insert. On PostgreSQL the insert waits for another
transaction inserting the same name and then does nothing, and the read (a statement of its own, so a
fresh snapshot under READ COMMITTED) sees that row: two writers always agree on the id. Names go in
sorted order so two writers take the rows' locks in the same order (no deadlock).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TargetRow", "load_targets", "resolve_targets"]

# A committed target as the store caches it: (id, first seen in ms, stored health code).
TargetRow = tuple[int, int, int | None]

# Bound parameters per read-back (SQLite before 3.32 takes at most 999).
_CHUNK = 500


async def load_targets(reader: Any) -> dict[str, TargetRow]:
    """Every committed target (the cache a store starts from)."""
    rows = await reader.execute_fetchall("SELECT id, name, first_seen, health FROM targets")
    return {name: (target_id, first_seen, health) for target_id, name, first_seen, health in rows}


async def resolve_targets(
    conn: Any, targets: Mapping[str, TargetRow], first_seen: Mapping[str, int]
) -> tuple[dict[str, int], dict[str, TargetRow]]:
    """Ids for `first_seen`'s names, inserting new targets inside the caller's transaction.

    `added` (new rows, or rows whose first_seen moved earlier) goes into the cache after the commit.
    Costs nothing for names already cached with an earlier first sighting (the probe hot path).
    """
    ids: dict[str, int] = {}
    missing: dict[str, int] = {}
    for name, first in first_seen.items():
        known = targets.get(name)
        if known is not None and known[1] <= first:
            ids[name] = known[0]
        else:
            missing[name] = first
    added: dict[str, TargetRow] = {}
    if not missing:
        return ids, added
    names = sorted(missing)
    await conn.executemany(
        "INSERT INTO targets (name, first_seen) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        [(name, missing[name]) for name in names],
    )
    earlier = []
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        rows = await conn.execute_fetchall(
            f"SELECT id, name, first_seen, health FROM targets WHERE name IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
        for target_id, name, stored_first, health in rows:
            first = missing[name]
            if first < stored_first:
                earlier.append((first, target_id, first))
                stored_first = first
            ids[name] = target_id
            added[name] = (target_id, stored_first, health)
    if earlier:
        # Another writer (or an earlier run) saw the target later than this batch did.
        await conn.executemany("UPDATE targets SET first_seen = ? WHERE id = ? AND first_seen > ?", earlier)
    return ids, added
