"""The durable alert outbox: every alert is a row in the store before anything is sent.

Life of a row: `pending` → (claim) `in_flight` → `sent` | back to `pending` (rescheduled, maybe on the next
channel of its plan) | `failed`. A claim is committed before the send, so after a crash or `kill -9` the
rows left `in_flight` are exactly the sends that may or may not have reached a gateway; they go back to
`pending` and out again with the same idempotency key (`alert_id`, from the dedupe key: eSMS RequestId,
ZNS tracking_id), which lets the gateway drop the repeat.

Every claim carries a claim lease (`claimed_by`, `claim_expires_at`, migration 8). On SQLite one daemon
owns the file: `recover()` at start puts every `in_flight` row back, as always. On PostgreSQL several
replicas share the table: a claim takes due rows with `FOR UPDATE SKIP LOCKED` (two replicas never claim
the same row), the worker renews the lease of the rows it is still sending (`renew`), and only rows
whose lease lapsed (their replica died) go back to `pending` (`release_expired`, at start and once per
poll), to be claimed by whichever replica comes next. Leases are measured on the database's clock
there (outbox_sql.lease_end), so a replica whose clock is off neither takes live claims nor holds its own
past the lease; which rows are due still follows the claimer's clock. A late outcome of a row another
replica took over meanwhile changes nothing but `sent` (the send happened).

Phone numbers, Zalo ids and the text are stored because sending needs them; `OutboxRow.public()` (what
the API and CLI show) and `repr` leave them out.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.model import AlertStatus, NewAlert
from alerts.outbox_rows import (
    OutboxChange,
    OutboxRow,
    SentMark,
    alert_id_for,
    failed_change,
    from_ms,
    prepare_changes,
    reschedule_change,
    row_from_values,
    to_ms,
)
from alerts.outbox_sql import (
    COLUMNS,
    INSERT,
    ClaimFilter,
    apply_changes,
    claim_statement,
    claimed_rows,
    lease_end,
    release_statement,
)
from monitor.store import SqlStore
from monitor.store.engine import POSTGRESQL, pick

__all__ = [
    "CLAIM_LEASE",
    "Outbox",
    "OutboxChange",
    "OutboxRow",
    "SentMark",
    "alert_id_for",
    "failed_change",
    "reschedule_change",
]

# How long a claim holds a row without being renewed. The worker renews the rows it is still sending
# every third of it (a send may wait out a rate limit or a 429 pause longer than any fixed lease), so
# this only bounds how long a dead replica's claims wait before another replica takes them over.
CLAIM_LEASE = timedelta(seconds=15)


class Outbox:
    """The `AlertSink` on the store's `alert_outbox` table (migration "alert outbox").

    `wakeup` is set whenever new rows are stored, so a delivery worker in the same process starts at once
    instead of waiting for its next poll. Reads go through the store's reader connection, writes through
    `store.transaction()` (serialised with the store's own batch writer).
    """

    def __init__(
        self,
        store: SqlStore,
        clock: Callable[[], datetime] | None = None,
        *,
        claim_lease: timedelta = CLAIM_LEASE,
    ) -> None:
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC))
        self.wakeup = asyncio.Event()
        self.claim_lease = claim_lease
        # Who holds the rows this outbox claims: host and process, for whoever reads the table.
        self.claimer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Replicas may share the table: claims are leased, only lapsed ones return (see the docstring).
        self.shared = store.dialect == POSTGRESQL

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
            cursor = await conn.executemany(INSERT + " ON CONFLICT (dedupe_key) DO NOTHING", rows)
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
            inserted = await conn.execute_fetchall(INSERT + " RETURNING id", values)
            expires, lease = self._lease_end(created)
            rows = await conn.execute_fetchall(
                f"UPDATE alert_outbox SET channel_attempts = 1, claimed_by = ?, claim_expires_at = {expires}"
                f" WHERE id = ? RETURNING {COLUMNS}",
                (self.claimer, lease, inserted[0][0]),
            )
        return row_from_values(rows[0])

    @property
    def _lease_ms(self) -> int:
        return int(self.claim_lease.total_seconds() * 1000)

    def _lease_end(self, at_ms: int) -> tuple[str, int]:
        """SQL and parameter for the end of a lease taken now (on PostgreSQL by the database's clock)."""
        return lease_end(self.store.dialect, at_ms, self._lease_ms)

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
        query = self._claim_query(now, limit, ClaimFilter(channel, other_than, fallback_only, waiting_too))
        async with self.store.transaction("outbox") as conn:
            return await claimed_rows(conn, query)

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
            await apply_changes(conn, prepared, self.store.dialect, self.claimer)
            return {
                name: await claimed_rows(conn, self._claim_query(now, limit, ClaimFilter(name)))
                for name, limit in limits.items()
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
            await apply_changes(conn, prepared, self.store.dialect, self.claimer)

    async def recover(self) -> int:
        """At start-up, before this process's worker runs: interrupted `in_flight` rows go back to
        `pending`, due now. On SQLite that is every one (one daemon per file); on PostgreSQL those whose
        claim lease lapsed (their replica died) and this outbox's own, never a live replica's.

        Such a row may or may not have reached its gateway; it is resent with the same alert_id.
        """
        return await self.release_expired(own_too=True)

    async def release_expired(self, *, own_too: bool = False) -> int:
        """Rows whose claim lease lapsed go back to `pending` (on SQLite every in-flight row: see
        `recover`); with `own_too` also this outbox's own claims. The worker runs it once per poll on
        PostgreSQL, where a replica may die at any time."""
        claimer = self.claimer if own_too else None
        async with self.store.transaction("outbox") as conn:
            cursor = await conn.execute(*release_statement(self.store.dialect, to_ms(self._clock()), claimer))
            count = max(0, cursor.rowcount)
            await cursor.close()
        if count:
            self.wakeup.set()
        return count

    async def renew(self, row_ids: Collection[int]) -> int:
        """Extend the claim lease of rows this outbox still holds (sends still running); returns how many
        are still ours (a row whose lease lapsed and that another replica took over is not)."""
        if not row_ids:
            return 0
        ids = sorted(row_ids)
        marks = ", ".join("?" * len(ids))
        expires, lease = self._lease_end(to_ms(self._clock()))
        async with self.store.transaction("outbox") as conn:
            cursor = await conn.execute(
                f"UPDATE alert_outbox SET claim_expires_at = {expires} WHERE status = 'in_flight'"
                f" AND claimed_by = ? AND id IN ({marks})",
                (lease, self.claimer, *ids),
            )
            count = max(0, cursor.rowcount)
            await cursor.close()
        return count

    # --- reads ----------------------------------------------------------------------------------------

    async def get(self, row_id: int) -> OutboxRow | None:
        rows = await self.store.reader.execute_fetchall(
            f"SELECT {COLUMNS} FROM alert_outbox WHERE id = ?", (row_id,)
        )
        return row_from_values(rows[0]) if rows else None

    async def get_by_key(self, dedupe_key: str) -> OutboxRow | None:
        rows = await self.store.reader.execute_fetchall(
            f"SELECT {COLUMNS} FROM alert_outbox WHERE dedupe_key = ?", (dedupe_key,)
        )
        return row_from_values(rows[0]) if rows else None

    async def list(
        self,
        since: datetime | None = None,
        status: AlertStatus | str | None = None,
        limit: int = 100,
    ) -> list[OutboxRow]:
        """Newest first: rows created at or after `since`, optionally of one status."""
        where, params = ["TRUE"], []
        if since is not None:
            where.append("created_at >= ?")
            params.append(to_ms(since))
        if status is not None:
            where.append("status = ?")
            params.append(AlertStatus(status).value)
        params.append(max(0, limit))
        rows = await self.store.reader.execute_fetchall(
            f"SELECT {COLUMNS} FROM alert_outbox WHERE {' AND '.join(where)}"
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
            pick(
                self.store.dialect,
                sqlite="SELECT min(max(created_at, not_before)) FROM alert_outbox"
                " WHERE status IN ('pending', 'in_flight') AND not_before <= ?",
                postgresql="SELECT min(GREATEST(created_at, not_before)) FROM alert_outbox"
                " WHERE status IN ('pending', 'in_flight') AND not_before <= ?",
            ),
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
                pick(
                    self.store.dialect,
                    sqlite="UPDATE alert_outbox SET phone = ?, zalo_user_id = ? WHERE status = 'pending'"
                    " AND person_id = ? AND (phone IS NOT ? OR zalo_user_id IS NOT ?)",
                    postgresql="UPDATE alert_outbox SET phone = ?, zalo_user_id = ? WHERE status = 'pending'"
                    " AND person_id = ? AND (phone IS DISTINCT FROM ? OR zalo_user_id IS DISTINCT FROM ?)",
                ),
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

    def _claim_query(self, now: datetime, limit: int, which: ClaimFilter) -> tuple[str, list[Any]]:
        """The statement and parameters of `claim` (see there): the rows it takes carry our claim lease."""
        at = to_ms(now)
        return claim_statement(self.store.dialect, (self.claimer, self._lease_ms), at, limit, which)

    def __repr__(self) -> str:
        return f"Outbox({self.store!r})"
