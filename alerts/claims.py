"""The claim leases of the rows one delivery worker is sending, for replicas sharing a PostgreSQL outbox.

Each claim is leased (alerts/outbox.py). The worker renews the lease of the rows it is still sending every
third of the lease, rather than taking one lease long enough for any send: a send may first wait out a
rate limit or a 429 pause, and a lease that long would hold a dead replica's alerts as long. Once per poll
it puts back the rows whose lease lapsed, so a dead replica's claims are sent by another within the lease
plus one poll. On SQLite (one daemon per file) neither is needed: both do nothing.
"""

from __future__ import annotations

import time

import structlog

from alerts.outbox import Outbox

__all__ = ["ClaimLeases"]

log = structlog.get_logger(__name__)


class ClaimLeases:
    """Rows claimed and not yet committed as an outcome (`hold`, `done`), and their leases."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.rows: set[int] = set()
        self._renewed = float("-inf")

    @property
    def renew_every(self) -> float | None:
        """Seconds between renewals (None when claims are not shared)."""
        return self.outbox.claim_lease.total_seconds() / 3 if self.outbox.shared else None

    def hold(self, row_id: int) -> None:
        self.rows.add(row_id)

    def done(self, row_id: int) -> None:
        self.rows.discard(row_id)

    def clear(self) -> None:
        self.rows = set()

    async def renew(self) -> None:
        """Extend the lease of the rows still being sent, when a third of it has passed."""
        every = self.renew_every
        if every is None or not self.rows:
            return
        now = time.monotonic()
        if now - self._renewed < every:
            return
        self._renewed = now
        held = await self.outbox.renew(self.rows)
        if held < len(self.rows):
            # Our lease lapsed (a stalled loop or database) and another replica took those rows over: it
            # sends them with the same idempotency key, so the gateway drops one of the two sends.
            log.warning("alert_claims_lost", count=len(self.rows) - held)

    async def take_over(self) -> int:
        """Put back the rows of replicas whose claim lease lapsed; returns how many."""
        if not self.outbox.shared:
            return 0
        released = await self.outbox.release_expired()
        if released:
            log.warning("alerts_taken_over", count=released)
        return released
