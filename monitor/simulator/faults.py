"""Fault switches of the simulator: what can break, where, and for how long."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from monitor.durations import format_duration, parse_duration

__all__ = [
    "API_FAULTS",
    "FAULTS",
    "SCOPES",
    "Fault",
    "ScheduledFault",
    "fault_from_request",
    "schedule_faults",
]

# down: public listeners stopped (connection refused); slow: each reply delayed; error_5xx: 500/503;
# maintenance: 200 with a maintenance page; expired_cert / cert_expiring: the TLS listener presents an
# expired / soon-expiring certificate; html_error: 200 with an HTML error page; truncated: fewer items
# than `total` claims (variant "short") or JSON cut off mid-way (variant "cut"); empty: total 0.
FAULTS = (
    "down",
    "slow",
    "error_5xx",
    "maintenance",
    "expired_cert",
    "cert_expiring",
    "html_error",
    "truncated",
    "empty",
)
API_FAULTS = frozenset({"truncated", "empty"})
SCOPES = ("portal", "app", "api", "all")
_VARIANTS = ("short", "cut")


@dataclass(frozen=True, slots=True)
class Fault:
    """One active or pending fault. Times are on the simulator's clock; None = open-ended."""

    fault: str
    scope: str = "all"
    starts_at: datetime | None = None
    until: datetime | None = None
    delay: timedelta = timedelta(seconds=3)
    status: int = 503
    variant: str = "short"
    source: str = "manual"

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {', '.join(FAULTS)}")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; expected one of {', '.join(SCOPES)}")
        if self.fault == "error_5xx" and self.status not in (500, 502, 503, 504):
            raise ValueError("status must be 500, 502, 503 or 504")
        if self.variant not in _VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected short or cut")

    def active(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (self.until is None or now < self.until)

    def expired(self, now: datetime) -> bool:
        return self.until is not None and now >= self.until

    def covers(self, scope: str | None) -> bool:
        """Whether it applies to a request of `scope`; None = any scope (listener-wide faults)."""
        return scope is None or self.scope == "all" or self.scope == scope

    def to_json(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "scope": self.scope,
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
            "until": self.until.isoformat() if self.until else None,
            "delay": format_duration(self.delay) if self.fault == "slow" else None,
            "status": self.status if self.fault == "error_5xx" else None,
            "variant": self.variant if self.fault == "truncated" else None,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """A fault planned at construction: from `start` after the simulator's epoch, for `duration`."""

    fault: str
    start: timedelta
    duration: timedelta | None = None
    scope: str = "all"
    delay: timedelta = timedelta(seconds=3)
    status: int = 503
    variant: str = "short"

    def at(self, epoch: datetime) -> Fault:
        starts_at = epoch + self.start
        until = starts_at + self.duration if self.duration is not None else None
        return Fault(
            self.fault,
            self.scope,
            starts_at,
            until,
            self.delay,
            self.status,
            self.variant,
            source="schedule",
        )


def schedule_faults(entries: Iterable[ScheduledFault | tuple[Any, ...]], epoch: datetime) -> list[Fault]:
    """Faults from a schedule; a tuple is `(fault, start offset, duration)` with durations as text or
    timedelta, e.g. `("down", "10m", "2m")`."""
    faults = []
    for entry in entries:
        if not isinstance(entry, ScheduledFault):
            name, start, *rest = entry
            duration = parse_duration(rest[0]) if rest and rest[0] is not None else None
            entry = ScheduledFault(str(name), parse_duration(start), duration)
        faults.append(entry.at(epoch))
    return faults


def fault_from_request(data: Mapping[str, Any], now: datetime) -> Fault:
    """A fault from the admin API's JSON body; raises ValueError with a short message."""
    if not isinstance(data, Mapping):
        raise ValueError("body must be a json object")
    unknown = set(data) - {"fault", "scope", "duration", "delay", "status", "variant"}
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
    name = data.get("fault")
    if not isinstance(name, str):
        raise ValueError("fault is required")
    fault = Fault(name, str(data.get("scope", "all")), starts_at=now)
    if data.get("duration") is not None:
        duration = parse_duration(data["duration"])
        if duration <= timedelta(0):
            raise ValueError("duration must be greater than zero")
        fault = replace(fault, until=now + duration)
    if data.get("delay") is not None:
        fault = replace(fault, delay=parse_duration(data["delay"]))
    if data.get("status") is not None:
        status = data["status"]
        if not isinstance(status, int) or isinstance(status, bool):
            raise ValueError("status must be an integer")
        fault = replace(fault, status=status)
    if data.get("variant") is not None:
        fault = replace(fault, variant=str(data["variant"]))
    return fault
