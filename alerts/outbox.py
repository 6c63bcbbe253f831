"""The durable alert outbox: every alert is a row in SQLite before anything is sent.

Life of a row: `pending` → (claim) `in_flight` → `sent` | back to `pending` (rescheduled, maybe on the next
channel of its plan) | `failed`. A claim is committed before the send, so after a crash or `kill -9` the
rows left `in_flight` are exactly the sends that may or may not have reached a gateway; `recover()` puts
them back to `pending` and they go out again with the same idempotency key (`alert_id`: eSMS RequestId,
ZNS tracking_id), which lets the gateway drop the repeat.

Phone numbers, Zalo ids and the text are stored because sending needs them; `OutboxRow.public()` (what
the API and CLI show) and `repr` leave them out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from alerts.model import AlertStatus, NewAlert
from alerts.outbox_rows import (
    OutboxChange,
    OutboxRow,
    PreparedChanges,
    SentMark,
    alert_id_for,
    failed_change,
    from_ms,
    prepare_changes,
    reschedule_change,
    row_from_values,
    to_ms,
)
from monitor.store import SqlStore

__all__ = [
    "Outbox",
    "OutboxChange",
    "OutboxRow",
    "SentMark",
    "alert_id_for",
    "failed_change",
    "reschedule_change",
]

_COLUMNS = (
    "id, dedupe_key, kind, severity, person_id, channels, channel_index, channel, text, template_params,"
    " phone, zalo_user_id, subject, keep, status, attempts, channel_attempts, next_attempt_at, created_at,"
    " event_at, not_before, sent_at, channel_used, provider_message_id, segments, last_error, duplicate_hint,"
    " deliver_by"
)
_INSERT = (
    "INSERT OR IGNORE INTO alert_outbox (dedupe_key, kind, severity, person_id, channels, channel_index,"
    " channel, text, template_params, phone, zalo_user_id, subject, keep, status, attempts, next_attempt_at,"
    " created_at, event_at, not_before, deliver_by)"
    " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Outbox:
    """The `AlertSink` on the store's `alert_outbox` table (migration "alert outbox").

    `wakeup` is set whenever new rows are stored, so a delivery worker in the same process starts at once
    instead of waiting for its next poll. Reads go through the store's reader connection, writes through
    `store.transaction()` (serialised with the store's own batch writer).
    """

    def __init__(self, store: SqlStore, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC))
        self.wakeup = asyncio.Event()

    def now(self) -> datetime:
        return self._clock()

    # --- writes ---------------------------------------------------------------------------------------

    async def enqueue(self, alerts: Sequence[NewAlert]) -> int:
        """Store alerts in one transaction (committed on return); a known dedupe_key is ignored.

        Returns how many rows were new.
        """
        if not alerts:
            return 0
        created = to_ms(self._clock())
        rows = [self._insert_values(alert, created) for alert in alerts]
        async with self.store.transaction("outbox") as conn:
            cursor = await conn.executemany(_INSERT, rows)
            added = max(0, cursor.rowcount)
            await cursor.close()
        if added:
            self.wakeup.set()
        return added

    async def enqueue_claimed(self, alert: NewAlert) -> OutboxRow:
        """Store one alert already `in_flight` (attempt 1), for a send made right now by the caller.

        A running delivery worker, even in another process, can then never pick it up as well.
        """
        created = to_ms(self._clock())
        values = list(self._insert_values(alert, created))
        values[12], values[13] = AlertStatus.IN_FLIGHT.value, 1
        async with self.store.transaction("outbox") as conn:
            cursor = await conn.execute(_INSERT.replace("INSERT OR IGNORE", "INSERT"), values)
            row_id = cursor.lastrowid
            await cursor.close()
            await conn.execute("UPDATE alert_outbox SET channel_attempts = 1 WHERE id = ?", (row_id,))
            rows = await conn.execute_fetchall(f"SELECT {_COLUMNS} FROM alert_outbox WHERE id = ?", (row_id,))
        return row_from_values(next(iter(rows)))

    @staticmethod
    def _insert_values(alert: NewAlert, created: int) -> tuple[Any, ...]:
        if not alert.dedupe_key:
            raise ValueError("dedupe_key must not be empty")
        not_before = to_ms(alert.not_before)
        return (
            alert.dedupe_key,
            str(alert.kind),
            str(alert.severity),
            alert.person_id,
            json.dumps(list(alert.channels)),
            alert.channels[0] if alert.channels else None,
            alert.text,
            json.dumps(dict(alert.template_params), ensure_ascii=False),
            alert.phone,
            alert.zalo_user_id,
            alert.subject,
            json.dumps(list(alert.keep), ensure_ascii=False),
            # A plan with no channel at all can never be sent: the worker fails it with that reason.
            AlertStatus.PENDING.value,
            0,
            not_before,
            created,
            to_ms(alert.event_at),
            not_before,
            None if alert.deliver_by is None else max(not_before, to_ms(alert.deliver_by)),
        )

    async def claim(
        self,
        now: datetime,
        limit: int,
        channel: str | None = None,
        *,
        other_than: Collection[str] | None = None,
        fallback_only: bool = False,
        waiting_too: bool = False,
    ) -> list[OutboxRow]:
        """Move up to `limit` due pending rows to `in_flight` and count the attempt, durably, in one go.

        `channel` restricts to rows whose current channel is that one; `other_than` to rows whose current
        channel is none of those (or none at all), which is how a worker finds rows it cannot send;
        `fallback_only` to rows with a further channel in their plan; `waiting_too` includes rows
        waiting out a retry backoff (not those before their not_before).
        """
        if limit <= 0:
            return []
        query = _claim_query(now, limit, channel, other_than, fallback_only, waiting_too)
        async with self.store.transaction("outbox") as conn:
            return await _claimed(conn, query)

    async def apply_and_claim(
        self, changes: Iterable[OutboxChange], at: datetime, now: datetime, limits: Mapping[str, int]
    ) -> dict[str, list[OutboxRow]]:
        """`apply` the outcomes, then `claim` up to `limits[channel]` due rows per channel, in one
        transaction: the delivery worker's round costs one commit instead of two."""
        prepared = prepare_changes(changes, to_ms(at))
        limits = {name: limit for name, limit in limits.items() if limit > 0}
        if not (any(prepared) or limits):
            return {}
        async with self.store.transaction("outbox") as conn:
            await _apply(conn, prepared)
            return {
                name: await _claimed(conn, _claim_query(now, limit, name)) for name, limit in limits.items()
            }

    async def mark_sent(
        self,
        row_id: int,
        channel: str,
        provider_message_id: str | None,
        segments: int = 1,
        *,
        duplicate: bool = False,
        at: datetime | None = None,
    ) -> None:
        """The gateway accepted the alert on `channel`."""
        await self.mark_sent_many([SentMark(row_id, channel, provider_message_id, segments, duplicate)], at)

    async def mark_sent_many(self, marks: Iterable[SentMark], at: datetime | None = None) -> None:
        """Record several accepted sends in one transaction."""
        await self.apply(marks, at)

    async def reschedule(self, row_id: int, at: datetime, error: str, next_channel: bool = False) -> None:
        """Back to `pending`, due at `at`; with `next_channel`, on the next channel of the plan.

        Moving past the last channel leaves `channel` NULL: fail the row instead when none is left.
        """
        await self.apply([reschedule_change(row_id, at, error, next_channel)])

    async def mark_failed(self, row_id: int, error: str) -> None:
        """No channel can deliver it (or it is too old): `failed` with the last error, never retried."""
        await self.apply([failed_change(row_id, error)])

    async def apply(self, changes: Iterable[OutboxChange], at: datetime | None = None) -> None:
        """Several outcomes (sent, rescheduled, failed) in one transaction: one commit per batch of sends."""
        prepared = prepare_changes(changes, to_ms(at or self._clock()))
        if not any(prepared):
            return
        async with self.store.transaction("outbox") as conn:
            await _apply(conn, prepared)

    async def recover(self) -> int:
        """At start-up, before any worker runs: every `in_flight` row goes back to `pending`, due now.

        Such a row may or may not have reached its gateway; it is resent with the same alert_id.
        """
        now = to_ms(self._clock())
        async with self.store.transaction("outbox") as conn:
            cursor = await conn.execute(
                # CASE rather than scalar min(): PostgreSQL has none (both engines read this the same).
                "UPDATE alert_outbox SET status = 'pending',"
                " next_attempt_at = CASE WHEN next_attempt_at < ?1 THEN next_attempt_at ELSE ?1 END,"
                " last_error = coalesce(last_error, 'interrupted: resent after restart')"
                " WHERE status = 'in_flight'",
                (now,),
            )
            count = max(0, cursor.rowcount)
            await cursor.close()
        if count:
            self.wakeup.set()
        return count

    # --- reads ----------------------------------------------------------------------------------------

    async def get(self, row_id: int) -> OutboxRow | None:
        rows = await self.store.reader.execute_fetchall(
            f"SELECT {_COLUMNS} FROM alert_outbox WHERE id = ?", (row_id,)
        )
        return row_from_values(rows[0]) if rows else None

    async def get_by_key(self, dedupe_key: str) -> OutboxRow | None:
        rows = await self.store.reader.execute_fetchall(
            f"SELECT {_COLUMNS} FROM alert_outbox WHERE dedupe_key = ?", (dedupe_key,)
        )
        return row_from_values(rows[0]) if rows else None

    async def list(
        self,
        since: datetime | None = None,
        status: AlertStatus | str | None = None,
        limit: int = 100,
    ) -> list[OutboxRow]:
        """Newest first: rows created at or after `since`, optionally of one status."""
        where, params = ["1"], []
        if since is not None:
            where.append("created_at >= ?")
            params.append(to_ms(since))
        if status is not None:
            where.append("status = ?")
            params.append(AlertStatus(status).value)
        params.append(max(0, limit))
        rows = await self.store.reader.execute_fetchall(
            f"SELECT {_COLUMNS} FROM alert_outbox WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            params,
        )
        return [row_from_values(values) for values in rows]

    async def counts(self) -> dict[AlertStatus, int]:
        """Rows per status."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT status, count(*) FROM alert_outbox GROUP BY status"
        )
        found = {AlertStatus(status): count for status, count in rows}
        return {status: found.get(status, 0) for status in AlertStatus}

    async def pending_by_channel(self) -> dict[str, int]:
        """Rows waiting to be sent (pending or in flight), by current channel ("" = none left)."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT coalesce(channel, ''), count(*) FROM alert_outbox"
            " WHERE status IN ('pending', 'in_flight') GROUP BY 1"
        )
        return dict(rows)

    async def oldest_pending_age(self, now: datetime) -> float:
        """Seconds since the oldest unsent alert became sendable (0 when none waits)."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT min(CASE WHEN created_at > not_before THEN created_at ELSE not_before END)"
            " FROM alert_outbox"
            " WHERE status IN ('pending', 'in_flight') AND not_before <= ?",
            (to_ms(now),),
        )
        oldest = rows[0][0] if rows else None
        return 0.0 if oldest is None else max(0.0, (to_ms(now) - oldest) / 1000)

    async def oldest_deferred_age(self, now: datetime) -> float:
        """Seconds since the oldest alert held back (quiet or working hours) was created (0 when none)."""
        rows = await self.store.reader.execute_fetchall(
            "SELECT min(created_at) FROM alert_outbox WHERE status = 'pending' AND not_before > ?",
            (to_ms(now),),
        )
        oldest = rows[0][0] if rows else None
        return 0.0 if oldest is None else max(0.0, (to_ms(now) - oldest) / 1000)

    async def cancel_for_people(self, person_ids: Iterable[str], reason: str) -> int:
        """Fail, never to be sent, the pending alerts of these people (removed from the directory by a
        reload), with `reason` as their error. Rows in flight finish their send. Returns how many."""
        people = sorted(set(person_ids))
        if not people:
            return 0
        marks = ", ".join("?" for _ in people)
        async with self.store.transaction("outbox") as conn:
            cursor = await conn.execute(
                f"UPDATE alert_outbox SET status = 'failed', last_error = ? WHERE status = 'pending'"
                f" AND person_id IN ({marks})",
                (reason, *people),
            )
            cancelled = max(0, cursor.rowcount)
            await cursor.close()
        return cancelled

    async def readdress(self, person_id: str, phone: str | None, zalo_user_id: str | None) -> int:
        """Point a person's pending alerts at their new contacts (changed by a reload); returns how many."""
        async with self.store.transaction("outbox") as conn:
            cursor = await conn.execute(
                "UPDATE alert_outbox SET phone = ?, zalo_user_id = ? WHERE status = 'pending'"
                " AND person_id = ? AND (phone IS NOT ? OR zalo_user_id IS NOT ?)",
                (phone, zalo_user_id, person_id, phone, zalo_user_id),
            )
            changed = max(0, cursor.rowcount)
            await cursor.close()
        return changed

    async def next_due(self) -> datetime | None:
        """When the earliest pending row becomes due (may be in the past)."""
        # next_attempt_at starts at not_before and only moves later, so it alone answers (from the index).
        rows = await self.store.reader.execute_fetchall(
            "SELECT min(next_attempt_at) FROM alert_outbox WHERE status = 'pending'"
        )
        return from_ms(rows[0][0]) if rows and rows[0][0] is not None else None

    def __repr__(self) -> str:
        return f"Outbox({self.store!r})"


async def _apply(conn: Any, prepared: PreparedChanges) -> None:
    sent, moved, failed = prepared
    if sent:
        await conn.executemany(
            "UPDATE alert_outbox SET status = 'sent', sent_at = ?, channel_used = ?,"
            " provider_message_id = ?, segments = ?, duplicate_hint = ? WHERE id = ?",
            sent,
        )
    if moved:
        # json_extract past the end of the list is NULL: "no channel left".
        await conn.executemany(
            "UPDATE alert_outbox SET status = 'pending', next_attempt_at = ?1, last_error = ?2,"
            " channel = CASE WHEN ?3 THEN json_extract(channels, '$[' || (channel_index + 1) || ']')"
            " ELSE channel END, channel_index = channel_index + ?3,"
            " channel_attempts = CASE WHEN ?3 THEN 0 ELSE channel_attempts END WHERE id = ?4",
            moved,
        )
    if failed:
        await conn.executemany(
            "UPDATE alert_outbox SET status = 'failed', last_error = coalesce(?, last_error) WHERE id = ?",
            failed,
        )


def _claim_query(
    now: datetime,
    limit: int,
    channel: str | None = None,
    other_than: Collection[str] | None = None,
    fallback_only: bool = False,
    waiting_too: bool = False,
) -> tuple[str, list[Any]]:
    """The statement and parameters of `Outbox.claim` (see there)."""
    at = to_ms(now)
    where = "status = 'pending' AND not_before <= ?"
    params: list[Any] = [at]
    if not waiting_too:
        where += " AND next_attempt_at <= ?"
        params.append(at)
    if channel is not None:
        where += " AND channel = ?"
        params.append(channel)
    if other_than is not None:
        names = sorted(other_than)
        marks = ", ".join("?" * len(names))
        where += f" AND (channel IS NULL OR channel NOT IN ({marks}))" if names else ""
        params.extend(names)
    if fallback_only:
        where += " AND json_array_length(channels) > channel_index + 1"
    params.append(limit)
    return (
        "UPDATE alert_outbox SET status = 'in_flight', attempts = attempts + 1,"
        " channel_attempts = channel_attempts + 1 WHERE id IN (SELECT id FROM alert_outbox"
        f" WHERE {where} ORDER BY next_attempt_at, id LIMIT ?) RETURNING {_COLUMNS}",
        params,
    )


async def _claimed(conn: Any, query: tuple[str, list[Any]]) -> list[OutboxRow]:
    rows = await conn.execute_fetchall(*query)
    claimed = [row_from_values(values) for values in rows]
    claimed.sort(key=lambda row: (row.next_attempt_at, row.id))
    return claimed
