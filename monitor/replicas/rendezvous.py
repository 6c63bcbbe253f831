"""Rendezvous (highest-random-weight) hashing with bounded loads: which live member owns a target or a
dossier source.

Each member scores every key with a stable 64-bit hash of (member id, key). Plain rendezvous gives each
key to its highest scorer: every member computes the same answer from the same member list with no
coordination, and a member leaving moves only its own keys. But it balances only on average: 10 dossier
sources over 3 members came out 1 / 8 / 1 in bench/scale.py, and a source is 100,000 dossiers of work.
So loads are bounded (consistent hashing with bounded loads, Mirrokni, Thorup and Zadimoghaddam 2018,
with the tightest bound): every member owns floor(n/m) or ceil(n/m) of the n keys. Keys are handed out
in decreasing order of (score, member, key) over all pairs, each to its best-scoring member that still
has room; the same answer in every process, whatever the order of `keys` or `members`.

The price of the bound is movement: a member leaving moves its own keys and, since the others' bounds
grow, a few more (about 1 % of 10,000 keys when one of three leaves, as tests/test_replicas.py checks).
blake2b, not Python's `hash()`: that one is salted per process, so two replicas would disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b

__all__ = ["assign", "owned", "weight"]


def weight(member: str, key: str) -> int:
    """The member's score for `key`: a 64-bit integer, the same in every process and on every machine."""
    # The 0 byte keeps ("ab", "c") and ("a", "bc") apart.
    digest = blake2b(f"{member}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(keys: Iterable[str], members: Sequence[str]) -> dict[str, str]:
    """Each key's owner among `members`, every member owning floor(n/m) or ceil(n/m) of the n keys (none
    when there are no members)."""
    unique = set(keys)
    live = sorted(set(members))
    if not live or not unique:
        return {}
    # Ties (never seen with 64 bits) go to the greater member id, then the greater key: no order matters.
    ranked = sorted(((weight(member, key), member, key) for key in unique for member in live), reverse=True)
    floor_share, extra = divmod(len(unique), len(live))
    owners: dict[str, str] = {}
    load = dict.fromkeys(live, 0)
    # First every member fills up to floor(n/m) with the keys it scores best; then the `extra` keys left
    # over go, one per member at most, to their best scorer: the loads never differ by more than one.
    for room in (floor_share, floor_share + 1):
        for _, member, key in ranked:
            if key not in owners and load[member] < room:
                owners[key] = member
                load[member] += 1
        if room == floor_share and extra == 0:
            break
    return owners


def owned(keys: Iterable[str], members: Sequence[str], me: str) -> set[str]:
    """The keys `me` owns among `members` (none when `me` is not a live member)."""
    if me not in members:
        return set()
    return {key for key, member in assign(keys, members).items() if member == me}
