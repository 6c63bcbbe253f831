"""The `dossiers:` config section: where dossiers come from and how early to warn about them.

Thresholds are amounts of *working time* in each dossier's own calendar, so `2d` is two working days
(16 working hours in an 8-hour calendar, 48 hours in a continuous one) and `4h` four working hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from pydantic import Field, field_validator

from monitor.configtypes import Duration, PositiveDuration, StrictModel
from probes.sources import SOURCE_TYPES, SourceConfig

__all__ = ["SOURCE_TYPES", "DossiersConfig", "WorkingAmount", "parse_working_amount"]

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_HOURS = {"ms": 1 / 3_600_000, "s": 1 / 3600, "m": 1 / 60, "h": 1.0}


@dataclass(frozen=True, slots=True)
class WorkingAmount:
    """A working-time amount as written (`key`): whole counted days plus working hours."""

    key: str
    days: float
    hours: float

    def hours_in(self, hours_per_day: float) -> float:
        """The amount in working hours of a calendar whose day is `hours_per_day` long."""
        return self.days * hours_per_day + self.hours


def parse_working_amount(text: str) -> WorkingAmount:
    """`2d`, `4h`, `90s`, `1d4h` -> WorkingAmount; ValueError with a short message otherwise."""
    compact = str(text).strip().replace(" ", "")
    if not compact or _PART.sub("", compact):
        raise ValueError(f"invalid working time {text!r}: use e.g. 2d, 4h, 30m")
    days = hours = 0.0
    for number, unit in _PART.findall(compact):
        if unit == "d":
            days += float(number)
        else:
            hours += float(number) * _HOURS[unit]
    if days <= 0 and hours <= 0:
        raise ValueError(f"invalid working time {text!r}: must be greater than zero")
    return WorkingAmount(compact, days, hours)


class DossiersConfig(StrictModel):
    """Dossier sources, warning thresholds and the rules that keep a bad sync from changing anything."""

    sources: list[SourceConfig] = Field(default_factory=list)
    # Warn when this much working time is left (a day = the calendar's hours_per_day).
    thresholds: list[str] = Field(default_factory=lambda: ["2d", "4h"])
    # Consecutive successful full reconciles a dossier may be missing from before it counts as vanished.
    vanish_after: int = Field(default=3, ge=1)
    # A full listing with fewer open dossiers than this share of the last one is a failed sync.
    suspicious_drop: float = Field(default=0.5, ge=0, le=1)
    # Working time before due_at in which a dossier-system incident counts as "overdue during outage".
    outage_window: str = "1d"
    on_time_window: PositiveDuration = timedelta(days=30)
    procedure_label: bool = False
    # None = every target with `dossier_system: true`.
    dossier_system_targets: list[str] | None = None
    # How often DB-backed aggregates (on-time ratio, postal share, totals) are recomputed for /metrics.
    aggregate_interval: PositiveDuration = timedelta(seconds=60)
    # Stop waiting for an in-flight sync on shutdown after this long.
    shutdown_grace: Duration = timedelta(seconds=10)

    @field_validator("thresholds")
    @classmethod
    def _valid_thresholds(cls, values: list[str]) -> list[str]:
        keys = [parse_working_amount(value).key for value in values]
        if len(set(keys)) != len(keys):
            raise ValueError("thresholds must not repeat")
        return keys

    @field_validator("outage_window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        return parse_working_amount(value).key

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list) -> list:  # type: ignore[type-arg]
        names = [source.name for source in sources]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate source name {duplicates[0]!r}")
        return sources

    @property
    def threshold_amounts(self) -> tuple[WorkingAmount, ...]:
        return tuple(parse_working_amount(key) for key in self.thresholds)

    @property
    def outage_amount(self) -> WorkingAmount:
        return parse_working_amount(self.outage_window)
