"""The morning digest: one message per person per day listing due-soon dossiers, instead of one each.

Due-soon alerts of rules with `digest: true` are collected durably (`alert_digest_items`, migration 4
"alert routing state"), keyed by the alert they replace, so collecting twice stores once. At the digest
time of a working day the person's waiting items are first assigned to that day's digest key (one
transaction), then the digest is enqueued as one `NewAlert` `digest:{person}:{date}` and the items are
marked. A crash in between only means the assigned digest is enqueued again on the next tick, which the
outbox ignores.

Replicas: `leader()` (default: always) says whether this member sends digests; any member collects
items. Everything `tick` reads is in the table, so the member elected next sends what the last one
left, and two members briefly both leading send each digest once (the outbox ignores the second).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from alerts.config import DigestConfig, clock_time
from alerts.directory import Directory
from alerts.model import AlertKind, AlertSink, NewAlert, Severity
from alerts.templates import Templates
from monitor.calendar import Calendars, WorkingCalendar
from monitor.store import SqlStore

__all__ = ["Digest", "DigestItem"]

log = structlog.get_logger("alerts.digest")

# Digested items are kept this long after their digest went out, then dropped.
_KEEP_DONE = timedelta(days=30)


def _epoch(value: datetime) -> int:
    return round(value.timestamp())


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One due-soon alert waiting for a person's digest."""

    dedupe_key: str
    person_id: str
    code: str
    due_at: datetime
    event_at: datetime
    channels: tuple[str, ...]


class Digest:
    """Collects digest items and builds the daily digests (see the module docstring)."""

    def __init__(
        self,
        config: DigestConfig,
        store: SqlStore,
        sink: AlertSink,
        directory: Directory,
        calendars: Calendars,
        templates: Templates,
        zone: ZoneInfo,
        *,
        schedule: Callable[[NewAlert], NewAlert] | None = None,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.leader: Callable[[], bool] = leader or (lambda: True)
        self.sink = sink
        self.directory = directory
        self.calendars = calendars
        self.templates = templates
        self.zone = zone
        # The router's quiet-hours rule, applied to the digest's not_before.
        self._schedule = schedule or (lambda alert: alert)
        self._at = clock_time(config.at)
        self._pruned_at: datetime | None = None

    def reconfigure(
        self,
        config: DigestConfig,
        directory: Directory,
        templates: Templates,
        schedule: Callable[[NewAlert], NewAlert],
    ) -> None:
        """Take a reloaded `alerts:` section (digest time, people, texts, the router's quiet hours)."""
        self.config = config
        self.directory = directory
        self.templates = templates
        self._schedule = schedule
        self._at = clock_time(config.at)

    async def drop_people(self, person_ids: Sequence[str]) -> int:
        """Forget the waiting items of people removed from the directory; return how many."""
        if not person_ids:
            return 0
        marks = ", ".join("?" for _ in person_ids)
        async with self.store.transaction() as conn:
            cursor = await conn.execute(
                f"DELETE FROM alert_digest_items WHERE enqueued = 0 AND person_id IN ({marks})",
                tuple(person_ids),
            )
            dropped = max(0, cursor.rowcount)
            await cursor.close()
        return dropped

    async def collect(self, items: Sequence[DigestItem]) -> int:
        """Store items for the next digest; an item already stored is ignored. Returns how many were new."""
        if not items:
            return 0
        async with self.store.transaction() as conn:
            cursor = await conn.executemany(
                "INSERT INTO alert_digest_items (dedupe_key, person_id, code, due_at, event_at, channels)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
                [
                    (
                        item.dedupe_key,
                        item.person_id,
                        item.code,
                        _epoch(item.due_at),
                        _epoch(item.event_at),
                        json.dumps(list(item.channels)),
                    )
                    for item in items
                ],
            )
            added = max(0, cursor.rowcount)
            await cursor.close()
        return added

    def calendar_for(self, person_id: str) -> WorkingCalendar:
        person = self.directory.person(person_id)
        unit = person.units[0] if person is not None and person.units else None
        return self.calendars.for_dossier(unit)

    def moment(self, person_id: str, day: date) -> datetime | None:
        """When `person_id`'s digest of `day` goes out, or None on a day off (working days only)."""
        if self.config.working_days_only and not self.calendar_for(person_id).is_working_day(day):
            return None
        return datetime.combine(day, self._at, tzinfo=self.zone)

    async def tick(self, now: datetime) -> int:
        """Build and enqueue the digests due by `now` (on the leader only); return how many were enqueued."""
        if not self.leader():
            return 0
        day = now.astimezone(self.zone).date()
        waiting = await self.store.reader.execute_fetchall(
            "SELECT DISTINCT person_id FROM alert_digest_items WHERE digest_key IS NULL ORDER BY person_id"
        )
        for (person_id,) in waiting:
            moment = self.moment(person_id, day)
            if moment is None or now < moment:
                continue
            await self._assign(person_id, f"digest:{person_id}:{day.isoformat()}", moment)
        enqueued = 0
        for (digest_key,) in await self.store.reader.execute_fetchall(
            "SELECT DISTINCT digest_key FROM alert_digest_items WHERE digest_key IS NOT NULL AND enqueued = 0"
            " ORDER BY digest_key"
        ):
            enqueued += await self._enqueue(digest_key, now)
        await self._prune(now)
        return enqueued

    async def _assign(self, person_id: str, digest_key: str, moment: datetime) -> None:
        async with self.store.transaction() as conn:
            done = await conn.execute_fetchall(
                "SELECT 1 FROM alert_digest_items WHERE digest_key = ? AND enqueued = 1 LIMIT 1",
                (digest_key,),
            )
            if done:
                # Today's digest already went out (the outbox would drop a second one with the same key):
                # late arrivals wait for the next one.
                return
            await conn.execute(
                "UPDATE alert_digest_items SET digest_key = ? WHERE person_id = ? AND digest_key IS NULL"
                " AND event_at < ?",
                (digest_key, person_id, _epoch(moment)),
            )

    async def _enqueue(self, digest_key: str, now: datetime) -> int:
        rows = await self.store.reader.execute_fetchall(
            "SELECT person_id, code, due_at, channels FROM alert_digest_items WHERE digest_key = ?"
            " ORDER BY due_at, code",
            (digest_key,),
        )
        if not rows:
            return 0
        person_id = rows[0][0]
        codes: list[str] = []
        for _person, code, _due, _channels in rows:
            if code not in codes:
                codes.append(code)
        shown = codes[: self.config.max_codes]
        rest = len(codes) - len(shown)
        day = date.fromisoformat(digest_key.rsplit(":", 1)[1])
        rendered = self.templates.render(
            AlertKind.DIGEST,
            {
                "date": day,
                "count": len(codes),
                "codes": ", ".join(shown),
                "more": f" và {rest} hồ sơ khác" if rest else "",
                "first": shown[0],
            },
        )
        person = self.directory.person(person_id)
        channels = tuple(json.loads(rows[-1][3]))
        alert = NewAlert(
            dedupe_key=digest_key,
            kind=AlertKind.DIGEST,
            severity=Severity.INFO,
            person_id=person_id,
            channels=channels,
            text=rendered.text,
            event_at=now,
            not_before=now,
            template_params=rendered.template_params,
            phone=person.phone if person is not None else None,
            zalo_user_id=person.zalo_user_id if person is not None else None,
            subject=f"digest:{day.isoformat()}",
            keep=tuple(shown[:1]),
        )
        added = await self.sink.enqueue([self._schedule(alert)])
        async with self.store.transaction() as conn:
            await conn.execute(
                "UPDATE alert_digest_items SET enqueued = 1 WHERE digest_key = ?", (digest_key,)
            )
        log.info("digest_enqueued", person_id=person_id, dossiers=len(codes), new=bool(added))
        return 1

    async def _prune(self, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < timedelta(hours=1):
            return
        self._pruned_at = now
        cutoff = _epoch(now - _KEEP_DONE)
        async with self.store.transaction() as conn:
            await conn.execute(
                "DELETE FROM alert_digest_items WHERE enqueued = 1 AND event_at < ?", (cutoff,)
            )

    async def pending(self, person_id: str | None = None) -> list[DigestItem]:
        """Items not yet in a digest (for tests, the API and the CLI)."""
        sql = (
            "SELECT dedupe_key, person_id, code, due_at, event_at, channels FROM alert_digest_items"
            " WHERE digest_key IS NULL"
        )
        params: tuple[str, ...] = ()
        if person_id is not None:
            sql += " AND person_id = ?"
            params = (person_id,)
        rows = await self.store.reader.execute_fetchall(sql + " ORDER BY due_at, code", params)
        return [
            DigestItem(
                row[0],
                row[1],
                row[2],
                datetime.fromtimestamp(row[3], UTC),
                datetime.fromtimestamp(row[4], UTC),
                tuple(json.loads(row[5])),
            )
            for row in rows
        ]
