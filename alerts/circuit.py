"""Per-channel circuit breakers: after repeated transient failures a channel is left alone for a while.

Failures count once per attempt, not once per request: sends that were already in flight when a failure
was counted are the same burst (twenty requests fired at one moment at a dead gateway are one piece of
news, not twenty), so only a failure of a send started after the last counted one adds to the count.
The open time starts short and doubles with each opening in a row, up to the configured cooldown, so a
gateway that was down briefly is tried again within seconds while one that stays down is not hammered.

A gateway's 429 does not count: it pauses the channel for its Retry-After and the circuit stays closed.
"""

from __future__ import annotations

from enum import StrEnum

import structlog

__all__ = ["CircuitBreaker", "CircuitState"]

log = structlog.get_logger(__name__)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Per-channel breaker on the worker's clock (epoch seconds). Not thread-safe; one event loop.

    `threshold` counted failures in a row open it for `first_cooldown`, then twice that on each
    re-opening without a success in between, at most `cooldown`.
    """

    def __init__(
        self, name: str, threshold: int, cooldown: float, first_cooldown: float | None = None
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self.first_cooldown = min(cooldown, cooldown if first_cooldown is None else first_cooldown)
        self.failures = 0
        self.open_until: float | None = None
        self.paused_until = 0.0
        self.reason = ""
        self.opened = 0
        # Openings since the last success: the next cooldown doubles with each.
        self.streak = 0
        # Sends are numbered as they start; a failure counts only if its send started after the last
        # counted failure (numbers rather than times: a burst may start and fail within one clock tick).
        self._started = 0
        self._counted_up_to = 0

    def state(self, now: float) -> CircuitState:
        if self.open_until is None:
            return CircuitState.CLOSED
        return CircuitState.OPEN if now < self.open_until else CircuitState.HALF_OPEN

    def paused(self, now: float) -> bool:
        return now < self.paused_until

    def available(self, now: float) -> bool:
        """Neither open nor paused: a send started now may go out."""
        return self.state(now) is not CircuitState.OPEN and not self.paused(now)

    def blocked_until(self, now: float) -> float:
        """When the channel may send again (`now` when it may already)."""
        until = self.paused_until
        if self.state(now) is CircuitState.OPEN and self.open_until is not None:
            until = max(until, self.open_until)
        return max(now, until)

    @property
    def up(self) -> bool:
        """Closed: what tthc_channel_up reports."""
        return self.open_until is None

    def next_cooldown(self) -> float:
        """How long the next opening lasts: doubling from `first_cooldown`, capped at `cooldown`."""
        return min(self.cooldown, self.first_cooldown * 2 ** min(self.streak, 60))

    def success(self) -> None:
        """The gateway answered (accepted, or refused this message for good): it is reachable."""
        if self.open_until is not None:
            log.info("channel_circuit_closed", channel=self.name)
        self.failures = 0
        self.streak = 0
        self.open_until = None
        self.reason = ""

    def begin(self) -> int:
        """A send starts: its number, to hand back to `failure`."""
        self._started += 1
        return self._started

    def failure(self, now: float, reason: str, send: int | None = None) -> bool:
        """A transient failure of send number `send` (from `begin`); returns whether it counted.

        Opens after `threshold` counted failures in a row, or at once when the failed send was the
        half-open trial. Without `send` the failure always counts.
        """
        if send is not None and send <= self._counted_up_to:
            return False
        self._counted_up_to = self._started
        self.failures += 1
        half_open = self.state(now) is CircuitState.HALF_OPEN
        if half_open or (self.open_until is None and self.failures >= self.threshold):
            cooldown = self.next_cooldown()
            self.streak += 1
            self.trip(now, cooldown, reason)
        return True

    def trip(self, now: float, cooldown: float, reason: str) -> None:
        """Open now for `cooldown` seconds (also used when the channel refuses credentials or quota)."""
        self.open_until = now + cooldown
        self.reason = reason
        self.opened += 1
        log.warning("channel_circuit_open", channel=self.name, seconds=round(cooldown, 3), reason=reason)

    def pause(self, until: float) -> None:
        """The gateway asked us to slow down: no new sends before `until` (the channel stays up)."""
        self.paused_until = max(self.paused_until, until)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, failures={self.failures}, open_until={self.open_until})"
