"""Per-channel admission for the delivery worker: each channel's circuit and its in-flight slots.

How many alerts of a channel may be claimed now: up to its `concurrency` (the delivery default when the
channel sets none), one trial while its circuit is half-open (alerts/circuit.py), none while it is open
or paused by a 429; how long a 429 pause still lasts; and when the first blocked channel opens again.
A slot is held from the claim until the outcome is committed, so in_flight rows in the store never
exceed a channel's capacity (a `kill -9` repeats at most that many sends per channel).
"""

from __future__ import annotations

from collections.abc import Mapping

from alerts.channels.base import Channel
from alerts.circuit import CircuitBreaker, CircuitState
from alerts.config import DeliveryConfig

__all__ = ["ChannelSlots"]


class ChannelSlots:
    """The circuits (`circuits`) and claimed-row counts (`in_flight`) of the configured channels."""

    def __init__(self, channels: Mapping[str, Channel], config: DeliveryConfig) -> None:
        self.channels = channels
        self.default_concurrency = config.default_concurrency
        self.circuits = {
            name: CircuitBreaker(
                name,
                config.circuit_failures,
                config.circuit_cooldown.total_seconds(),
                config.backoff_base.total_seconds(),
            )
            for name in channels
        }
        self.in_flight: dict[str, int] = dict.fromkeys(channels, 0)
        # Per channel: the end of the blocked period whose waiting rows were already moved on.
        self._passed_blocked: dict[str, float] = {}

    def clear(self) -> None:
        """No slot held (a fresh start: rows claimed before were put back to pending)."""
        self.in_flight = dict.fromkeys(self.channels, 0)

    def capacity(self, name: str) -> int:
        """How many alerts of this channel may be claimed (in flight) at once."""
        config = getattr(self.channels[name], "config", None)
        concurrency = getattr(config, "concurrency", None)
        return int(concurrency) if isinstance(concurrency, int) else self.default_concurrency

    def free(self, name: str, at: float, releasing: int) -> int:
        """Rows of an available channel that may be claimed at `at` (epoch seconds); `releasing` slots are
        those of outcomes committed in the same transaction as the claim, which count as free."""
        busy = self.in_flight[name] - releasing
        free = self.capacity(name) - busy
        if self.circuits[name].state(at) is CircuitState.HALF_OPEN:
            free = min(free, 1 - busy)
        return free

    def first_pass(self, name: str, until: float) -> bool:
        """Whether the rows waiting on this blocked channel were not yet moved on in the period ending
        `until` (one pass per blocked period; afterwards the index of due rows suffices)."""
        return self._passed_blocked.get(name) != until

    def passed(self, name: str, until: float) -> None:
        """Every row waiting on this channel was moved on in the blocked period ending `until`."""
        self._passed_blocked[name] = until

    def hold(self, name: str) -> None:
        self.in_flight[name] += 1

    def release(self, name: str) -> None:
        """Free a slot once its outcome is committed (a channel removed since keeps no count)."""
        if name in self.in_flight:
            self.in_flight[name] -= 1

    def paused_for(self, name: str, at: float) -> float:
        """Seconds left of the channel's 429 pause at `at` (0 when none)."""
        return max(0.0, self.circuits[name].paused_until - at)

    def reopen_in(self, at: float) -> float | None:
        """Seconds from `at` until the first open or paused channel may be tried again; None when none is."""
        ends = [
            until
            for circuit in self.circuits.values()
            for until in (circuit.open_until, circuit.paused_until)
            if until is not None and until > at
        ]
        return min(until - at for until in ends) if ends else None

    def states(self) -> dict[str, bool]:
        """Channel name → up (circuit closed), for metrics."""
        return {name: circuit.up for name, circuit in self.circuits.items()}
