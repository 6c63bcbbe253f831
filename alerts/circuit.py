"""Per-channel circuit breakers: after repeated transient failures a channel is left alone for a while."""

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
    """Per-channel breaker on the worker's clock (epoch seconds). Not thread-safe; one event loop."""

    def __init__(self, name: str, threshold: int, cooldown: float) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.open_until: float | None = None
        self.paused_until = 0.0
        self.reason = ""
        self.opened = 0

    def state(self, now: float) -> CircuitState:
        if self.open_until is None:
            return CircuitState.CLOSED
        return CircuitState.OPEN if now < self.open_until else CircuitState.HALF_OPEN

    def paused(self, now: float) -> bool:
        return now < self.paused_until

    @property
    def up(self) -> bool:
        """Closed: what tthc_channel_up reports."""
        return self.open_until is None

    def success(self) -> None:
        """The gateway answered (accepted, or refused this message for good): it is reachable."""
        if self.open_until is not None:
            log.info("channel_circuit_closed", channel=self.name)
        self.failures = 0
        self.open_until = None
        self.reason = ""

    def failure(self, now: float, reason: str) -> None:
        """A transient failure; opens after `threshold` in a row, or at once when half-open."""
        self.failures += 1
        half_open = self.state(now) is CircuitState.HALF_OPEN
        if half_open or (self.open_until is None and self.failures >= self.threshold):
            self.trip(now, self.cooldown, reason)

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
