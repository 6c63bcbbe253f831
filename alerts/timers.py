"""Alert timers: "longer than" checks kept in the `alert_timers` table (outage groups, with their
reminders, are rows of it too: alerts/grouping.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from alerts.model import AlertKind
from alerts.rules import RuleConfig
from monitor.events import DossierSyncFailed, TargetStateChanged
from monitor.store import SqlStore

__all__ = [
    "Timer",
    "Timers",
    "cert_warning_timer",
    "degraded_timer",
    "epoch",
    "from_epoch",
    "sync_timer",
]


def epoch(value: datetime) -> int:
    """Whole epoch seconds, as the store keeps times (and as dedupe keys show them)."""
    return round(value.timestamp())


def from_epoch(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class Timer:
    """A pending "longer than" check (or a later certificate warning) for one rule."""

    key: str
    kind: AlertKind
    name: str
    rule: str
    since: datetime
    fire_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


def degraded_timer(event: TargetStateChanged, rule: RuleConfig) -> Timer:
    """Fires when the target is still DEGRADED after the rule's `after`."""
    return Timer(
        key=f"degraded:{event.target}:{rule.name}",
        kind=AlertKind.TARGET_DEGRADED,
        name=event.target,
        rule=rule.name,
        since=event.at,
        fire_at=event.at + rule.degraded_after,
        data={"reason": event.reason.value if event.reason else None, "detail": event.detail},
    )


def cert_warning_timer(
    event: TargetStateChanged, rule: RuleConfig, expiry: datetime, warn_at: datetime
) -> Timer:
    """Fires at `warn_at`, when the rule's `days` before the certificate's `expiry` begin."""
    return Timer(
        key=f"cert:{event.target}:{rule.name}",
        kind=AlertKind.CERT_EXPIRING,
        name=event.target,
        rule=rule.name,
        since=event.at,
        fire_at=warn_at,
        data={"expiry": epoch(expiry), "detail": event.detail},
    )


def sync_timer(event: DossierSyncFailed, rule: RuleConfig) -> Timer:
    """Fires when the dossier source is still failing or stale after the rule's `after`."""
    # Stale since the last success, failing since the first failure seen: whichever is known.
    since = event.last_success_at or event.at
    return Timer(
        key=f"sync:{event.source}:{rule.name}",
        kind=AlertKind.SYNC_FAILING,
        name=event.source,
        rule=rule.name,
        since=since,
        fire_at=since + rule.sync_after,
        data={"reason": event.reason, "failures": event.consecutive_failures},
    )


class Timers:
    """The `alert_timers` table with an in-memory copy; memory only without a store (tests, dry runs)."""

    def __init__(self, store: SqlStore | None = None) -> None:
        self.store = store
        self._timers: dict[str, Timer] = {}

    async def load(self) -> None:
        if self.store is None:
            return
        rows = await self.store.reader.execute_fetchall(
            "SELECT key, kind, name, rule, since, fire_at, data FROM alert_timers"
        )
        self._timers = {
            row[0]: Timer(
                row[0],
                AlertKind(row[1]),
                row[2],
                row[3],
                from_epoch(row[4]),
                from_epoch(row[5]),
                json.loads(row[6]),
            )
            for row in rows
        }

    def get(self, key: str) -> Timer | None:
        return self._timers.get(key)

    def __len__(self) -> int:
        return len(self._timers)

    def all(self) -> list[Timer]:
        return sorted(self._timers.values(), key=lambda timer: (timer.fire_at, timer.key))

    async def start(self, timer: Timer, *, update_data: bool = False) -> Timer:
        """Start `timer` unless one with its key runs already (then optionally refresh its data)."""
        current = self._timers.get(timer.key)
        if current is not None:
            if not update_data or current.data == timer.data:
                return current
            timer = Timer(
                current.key,
                current.kind,
                current.name,
                current.rule,
                current.since,
                current.fire_at,
                timer.data,
            )
        await self._write(timer, "ON CONFLICT (key) DO UPDATE SET data = excluded.data")
        return timer

    async def put(self, timer: Timer) -> None:
        """Store `timer` as it is, replacing one with its key (fire time and data included)."""
        await self._write(
            timer, "ON CONFLICT (key) DO UPDATE SET fire_at = excluded.fire_at, data = excluded.data"
        )

    async def _write(self, timer: Timer, on_conflict: str) -> None:
        self._timers[timer.key] = timer
        if self.store is None:
            return
        async with self.store.transaction() as conn:
            await conn.execute(
                "INSERT INTO alert_timers (key, kind, name, rule, since, fire_at, data)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?) {on_conflict}",
                (
                    timer.key,
                    timer.kind.value,
                    timer.name,
                    timer.rule,
                    epoch(timer.since),
                    epoch(timer.fire_at),
                    json.dumps(dict(timer.data)),
                ),
            )

    async def cancel(self, kinds: Iterable[AlertKind], name: str) -> int:
        kinds = set(kinds)
        doomed = [key for key, timer in self._timers.items() if timer.kind in kinds and timer.name == name]
        await self.remove(doomed)
        return len(doomed)

    async def remove(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        for key in keys:
            self._timers.pop(key, None)
        if self.store is not None:
            async with self.store.transaction() as conn:
                await conn.executemany("DELETE FROM alert_timers WHERE key = ?", [(key,) for key in keys])

    def due(self, now: datetime) -> list[Timer]:
        return [timer for timer in self.all() if timer.fire_at <= now]
