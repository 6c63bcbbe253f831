"""Each target's current state as every replica can answer it: what `/api/v1/targets` and the status page
show.

One process reads its scheduler's trackers directly (`local_states`, no I/O). Replicas each hold only
the trackers of the targets they own, so every member publishes its targets' states to
`replica_target_states` once per heartbeat (only rows that changed), and the API of every member reads
all of them from there: the same answer on every replica, at most one heartbeat old.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.state import TargetTracker
from monitor.store.sql import SqlStore

__all__ = ["SharedTargetStates", "TargetState", "local_states"]


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the API shows of a target's live state (times as aware datetimes, `cert_expiry` unixtime)."""

    health: str
    since: datetime | None
    last_probe_at: datetime | None
    last_duration_seconds: float | None
    last_success: bool | None
    reason: str | None
    detail: str | None
    status_code: int | None
    cert_expiry: float | None
    incident_open: bool
    incident_id: int | None

    @classmethod
    def of(cls, tracker: TargetTracker, incident_id: int | None) -> TargetState:
        outcome = tracker.last_outcome
        return cls(
            health=tracker.health.value,
            since=tracker.last_change_at,
            last_probe_at=tracker.last_probe_at,
            last_duration_seconds=round(tracker.last_duration, 6) if outcome else None,
            last_success=outcome.success if outcome else None,
            reason=outcome.reason.value if outcome and outcome.reason else None,
            detail=outcome.detail if outcome else None,
            status_code=outcome.status_code if outcome else None,
            cert_expiry=outcome.cert_expiry if outcome else None,
            incident_open=tracker.incident_open,
            incident_id=incident_id,
        )

    def to_json(self) -> str:
        values = asdict(self)
        for name in ("since", "last_probe_at"):
            moment = values[name]
            values[name] = None if moment is None else moment.timestamp()
        return json.dumps(values, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TargetState:
        values: dict[str, Any] = json.loads(text)
        for name in ("since", "last_probe_at"):
            stamp = values[name]
            values[name] = None if stamp is None else datetime.fromtimestamp(stamp, UTC)
        return cls(**values)


def local_states(
    trackers: Mapping[str, TargetTracker], incident_id: Callable[[str], int | None]
) -> dict[str, TargetState]:
    """The states of the targets this process probes, straight from its trackers."""
    return {name: TargetState.of(tracker, incident_id(name)) for name, tracker in list(trackers.items())}


class SharedTargetStates:
    """`replica_target_states`: one row per target, written by its owner, read by every member."""

    def __init__(self, store: SqlStore, member_id: str) -> None:
        self.store = store
        self.member_id = member_id
        self._published: dict[str, str] = {}

    async def publish(self, states: Mapping[str, TargetState], now: datetime) -> int:
        """Write the states that changed since the last call; returns how many rows were written."""
        encoded = {name: state.to_json() for name, state in states.items()}
        changed = [(name, text) for name, text in encoded.items() if self._published.get(name) != text]
        if changed:
            stamp = int(now.timestamp() * 1000)
            async with self.store.transaction("replicas") as conn:
                await conn.executemany(
                    "INSERT INTO replica_target_states (target, member, state, updated_at)"
                    " VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (target) DO UPDATE SET member = excluded.member, state = excluded.state,"
                    " updated_at = excluded.updated_at",
                    [(name, self.member_id, text, stamp) for name, text in changed],
                )
        # Targets given up are forgotten here: if they come back, their state is written again.
        self._published = encoded
        return len(changed)

    async def read(self, names: Iterable[str]) -> dict[str, TargetState]:
        """The stored states of `names` (those never published are missing)."""
        wanted = set(names)
        rows = await self.store.reader.execute_fetchall("SELECT target, state FROM replica_target_states")
        return {name: TargetState.from_json(text) for name, text in rows if name in wanted}
