"""Probe slots: how the scheduler's concurrency limit is shared so that hanging targets cannot starve
the targets that answer.

`max_concurrency` bounds the probes that are *working*: a probe holds an active slot from its start until
it finishes or `park_after` has passed. A probe still running by then is waiting on a silent peer (a
blackholed address, a server that accepted and never answers); it gives its active slot back and waits in
a *parked* slot until its own timeout. Parked probes cost a socket each, not CPU, so they are bounded by
the file descriptors the process may open rather than by `max_concurrency`.

When parking is full, a waiting probe keeps its active slot. Then the second guard applies: targets known
to be slow (their last probe timed out or used half its timeout) take one of `max_concurrency // 2` slow
tickets before an active slot, so together they never hold more than half of the active slots and the
other half stays for the targets that answer.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass

__all__ = ["ProbeSlots", "default_parked_limit"]

# File descriptors kept for everything else: the store, the API's clients, dossier sources, alerts.
_RESERVED_DESCRIPTORS = 256


def default_parked_limit(max_concurrency: int) -> int:
    """Half of the descriptors left once the active slots and a reserve are counted, at least
    `max_concurrency` (RLIMIT_NOFILE 20,000 and 256 slots: 9,744 parked probes)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(max_concurrency, (soft - max_concurrency - _RESERVED_DESCRIPTORS) // 2)


@dataclass(slots=True)
class _Held:
    """What one probe holds right now."""

    slow_ticket: bool = False
    active: bool = False
    parked: bool = False


class ProbeSlots:
    """Active slots, slow tickets and parked slots. `hold()` then `park()` (from a timer) then `release()`."""

    def __init__(self, max_concurrency: int, parked_limit: int | None = None) -> None:
        self.max_concurrency = max_concurrency
        self._active = asyncio.Semaphore(max_concurrency)
        self._slow = asyncio.Semaphore(max(1, max_concurrency // 2))
        self.parked_limit = default_parked_limit(max_concurrency) if parked_limit is None else parked_limit
        self.parked = 0

    async def hold(self, *, slow: bool) -> _Held:
        """Wait for an active slot (a slow ticket first when the target is known to be slow)."""
        held = _Held()
        try:
            if slow:
                await self._slow.acquire()
                held.slow_ticket = True
            await self._active.acquire()
            held.active = True
        except BaseException:
            self.release(held)
            raise
        return held

    def park(self, held: _Held) -> None:
        """The probe is waiting on a silent peer: hand its active slot (and slow ticket) to others, if a
        parked slot is free; otherwise it keeps them."""
        if not held.active or self.parked >= self.parked_limit:
            return
        self.parked += 1
        held.parked = True
        held.active = False
        self._active.release()
        if held.slow_ticket:
            held.slow_ticket = False
            self._slow.release()

    def release(self, held: _Held) -> None:
        if held.parked:
            held.parked = False
            self.parked -= 1
        if held.active:
            held.active = False
            self._active.release()
        if held.slow_ticket:
            held.slow_ticket = False
            self._slow.release()
