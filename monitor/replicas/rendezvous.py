"""Rendezvous (highest-random-weight) hashing: which live member owns a target or a dossier source.

Each member scores every key with a stable 64-bit hash of (member id, key); the highest score owns it.
Every member computes the same answer from the same member list, with no coordination; a member leaving
moves only its own keys (each to the member that scored second), and a member joining takes about
1/N of the keys from the others. blake2b, not Python's `hash()`: that one is salted per process, so two
replicas would disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b

__all__ = ["owned", "owner", "weight"]


def weight(member: str, key: str) -> int:
    """The member's score for `key`: a 64-bit integer, the same in every process and on every machine."""
    # The 0 byte keeps ("ab", "c") and ("a", "bc") apart.
    digest = blake2b(f"{member}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, members: Sequence[str]) -> str | None:
    """The member that owns `key`, or None when there are no members. Ties (never seen in practice with
    64 bits) go to the greater member id, so the answer never depends on the order of `members`."""
    if not members:
        return None
    return max(members, key=lambda member: (weight(member, key), member))


def owned(keys: Iterable[str], members: Sequence[str], me: str) -> set[str]:
    """The keys `me` owns among `members` (none when `me` is not a live member)."""
    if me not in members:
        return set()
    return {key for key in keys if owner(key, members) == me}
