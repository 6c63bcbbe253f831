"""The delivery worker: takes due alerts from the outbox and sends them through their channel plan.

What one attempt comes to (sent, retried, the next channel, failed) is decided in alerts/attempts.py.
Each alert has a deliver-by time (a dossier alert: its due time less `DELIVER_BEFORE_DUE`; anything
else: at once). Per channel:

    situation                                alert with a further channel     alert on its last channel
    ---------------------------------------  -------------------------------  ----------------------------
    transient failure, retry before          same channel after the backoff   same channel after the backoff
      deliver-by                             (the next one after
                                             `fallback_after` failures)
    transient failure, retry after           the next channel at once         same channel after the backoff
      deliver-by
    429: paused for exactly Retry-After      the next channel at once         waits for the pause to end
      (within [0, backoff_max]; the backoff
      when missing or garbage)
    circuit open                             the next channel at once         waits; one trial when half-open

The circuit (alerts/circuit.py) opens after `circuit_failures` failures of distinct attempts in a row (a
burst of sends that were in flight together counts once; 429 never counts), first for `backoff_base`,
doubling per failed trial up to `circuit_cooldown`. So a gateway that fails N requests and recovers
delays delivery by no more than the backoff schedule of N failures.

At most `concurrency` alerts of a channel are claimed (in_flight in the store) at a time, so a `kill -9`
can cause at most that many repeats per channel, each carrying the same idempotency key (the slots and
circuits per channel: alerts/channel_slots.py; one send: alerts/sending.py). A test alert
(`notify-test`) goes out through alerts/channel_check.py.

Replicas on PostgreSQL: claims are leased, renewed while sending, and taken over once lapsed
(alerts/claims.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from alerts.attempts import AttemptPolicy, Outcome
from alerts.channel_slots import ChannelSlots
from alerts.channels.base import Channel, DeliveryReceipt
from alerts.claims import ClaimLeases
from alerts.config import DeliveryConfig
from alerts.outbox import Outbox, OutboxRow
from alerts.sending import RowSender

if TYPE_CHECKING:
    from alerts.alert_metrics import AlertMetrics

__all__ = ["DeliveryWorker", "OnSent"]

log = structlog.get_logger(__name__)

# Rows moved off an open channel per loop; more follow on the next turn.
_FALLBACK_BATCH = 200
# Seconds between re-reads of the outbox backlog gauges.
_METRICS_REFRESH = 1.0

OnSent = Callable[[OutboxRow, DeliveryReceipt], Awaitable[None] | None]


def _epoch(value: datetime) -> float:
    return value.timestamp()


class DeliveryWorker:
    """Sends due outbox rows; `start()` recovers interrupted rows and runs the loop, `stop()` drains it.

    Tests drive it deterministically with `run_once()` and an injected clock instead of `start()`.
    """

    def __init__(
        self,
        outbox: Outbox,
        channels: Mapping[str, Channel],
        config: DeliveryConfig | None = None,
        clock: Callable[[], datetime] | None = None,
        on_sent: OnSent | None = None,
        *,
        metrics: AlertMetrics | None = None,
    ) -> None:
        self.outbox = outbox
        self.channels = dict(channels)
        self.config = config or DeliveryConfig()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.on_sent = on_sent
        self.metrics = metrics
        self.slots = ChannelSlots(self.channels, self.config)
        self.circuits = self.slots.circuits
        self.claims = ClaimLeases(outbox)
        self._tasks: set[asyncio.Task[Outcome]] = set()
        # Outcomes not yet committed, and whether each holds an in-flight slot of its channel.
        self._uncommitted: list[tuple[Outcome, bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_event = asyncio.Event()
        self.sent = 0
        self.failed = 0
        self._refreshed = 0.0
        self._swept = float("-inf")
        self.attempts = AttemptPolicy(self.config, self.circuits)
        self.sender = RowSender(self.channels, self.circuits, self.attempts, self.now)
        for name, channel in self.channels.items():
            if hasattr(channel, "held_back"):
                channel.held_back = functools.partial(self._paused_for, name)
        if metrics is not None:
            metrics.bind(self)

    def now(self) -> datetime:
        return self._clock()

    def _paused_for(self, name: str) -> float:
        """Seconds left of the channel's 429 pause (0 when none), on the worker's clock."""
        return self.slots.paused_for(name, _epoch(self.now()))

    @property
    def in_flight(self) -> int:
        return sum(self.slots.in_flight.values())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def take_crash(self) -> BaseException | None:
        """The exception that ended the loop, handed out once (None while it runs, after a stop, or when
        already taken); `start()` may then run the loop again."""
        task = self._task
        if task is None or not task.done():
            return None
        self._task = None
        return None if task.cancelled() else task.exception()

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Put rows interrupted by a crash back to pending, then run the loop in the background."""
        recovered = await self.outbox.recover()
        if recovered:
            log.warning("alerts_recovered", count=recovered)
        self._stopping = False
        self._stop_event.clear()
        self._tasks = set()
        self._uncommitted = []
        self.slots.clear()
        self.claims.clear()
        self._task = asyncio.create_task(self._run(), name="alert-delivery")

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let in-flight sends finish within `grace` seconds, cancel the rest.

        Cancelled sends stay in_flight in the store and go out again after `recover()` on restart.
        """
        if self._task is None:
            return
        self._stopping = True
        self._grace = self.config.shutdown_grace.total_seconds() if grace is None else grace
        self._stop_event.set()
        task, self._task = self._task, None
        await task

    async def _run(self) -> None:
        wakeup = self.outbox.wakeup
        poll = self.config.poll_interval.total_seconds()
        renew_every = self.claims.renew_every
        try:
            while not self._stopping:
                # Cleared before claiming: an enqueue after this point sets it again and ends the wait.
                wakeup.clear()
                timeout = poll
                try:
                    now = self.now()
                    await self.claims.renew()
                    await self._fill(now)
                    timeout = await self._idle_timeout(now)
                    if renew_every is not None:
                        timeout = min(timeout, renew_every)
                except Exception:
                    # A locked or full disk: keep the claimed rows' outcomes in memory and try again.
                    log.exception("alert_delivery_round_failed")
                    timeout = min(poll, 1.0)
                waiters = {
                    asyncio.ensure_future(wakeup.wait()),
                    asyncio.ensure_future(self._stop_event.wait()),
                }
                try:
                    await asyncio.wait(
                        self._tasks | waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                    await asyncio.gather(*waiters, return_exceptions=True)
                # Committed by the next round's claim, in the same transaction.
                await self._collect(commit=False)
                await self._refresh_metrics()
        finally:
            await self._drain(getattr(self, "_grace", self.config.shutdown_grace.total_seconds()))

    async def _drain(self, grace: float) -> None:
        if self._tasks and grace > 0:
            await asyncio.wait(self._tasks, timeout=grace)
        finished = {task for task in self._tasks if task.done()}
        rest = self._tasks - finished
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        self._tasks = finished
        with contextlib.suppress(Exception):
            await self._collect()
        if rest:
            log.warning("alert_sends_cancelled", count=len(rest))

    async def _refresh_metrics(self) -> None:
        now = time.monotonic()
        if self.metrics is None or now - self._refreshed < _METRICS_REFRESH:
            return
        self._refreshed = now
        try:
            await self.metrics.refresh()
        except Exception:
            log.exception("alert_metrics_refresh_failed")

    async def _idle_timeout(self, now: datetime) -> float:
        poll = self.config.poll_interval.total_seconds()
        due = await self.outbox.next_due()
        if due is None:
            return poll
        wait = (due - now).total_seconds()
        if wait > 0:
            return min(poll, wait)
        # Something is due but was not claimed: its channel is full (a completion wakes us), paused or
        # open (wake when that ends).
        reopen = self.slots.reopen_in(_epoch(now))
        return poll if reopen is None else min(poll, reopen)

    # --- one round ------------------------------------------------------------------------------------

    async def run_once(self, now: datetime | None = None) -> int:
        """Send everything due at `now` (following fallbacks made at `now`); return rows processed."""
        total = 0
        while True:
            at = now or self.now()
            started = await self._fill(at, sweep=True)
            if self._tasks:
                await asyncio.wait(self._tasks)
            await self._collect()
            total += started
            if not started:
                return total

    async def _fill(self, now: datetime, *, sweep: bool = False) -> int:
        """Commit the outcomes waiting in memory and claim what each channel can take now, in one
        transaction; start the sends. Returns rows claimed."""
        at = _epoch(now)
        direct: list[Outcome] = []
        claimed = 0
        wanted: dict[str, int] = {}
        releasing: dict[str, int] = {}
        for outcome, slot in self._uncommitted:
            if slot:
                releasing[outcome.channel] = releasing.get(outcome.channel, 0) + 1
        for name in self.channels:
            circuit = self.circuits[name]
            if not circuit.available(at):
                # Open or paused: alerts with a further channel take it now, also those waiting out a
                # backoff (one pass per blocked period); the others wait for this channel.
                until = circuit.blocked_until(at)
                first_pass = self.slots.first_pass(name, until)
                rows = await self.outbox.claim(
                    now, _FALLBACK_BATCH, name, fallback_only=True, waiting_too=first_pass
                )
                if len(rows) < _FALLBACK_BATCH:
                    self.slots.passed(name, until)
                direct.extend(self.attempts.unavailable(row, now, circuit) for row in rows)
                claimed += len(rows)
                continue
            free = self.slots.free(name, at, releasing.get(name, 0))
            if free > 0:
                wanted[name] = free
        batch, self._uncommitted = self._uncommitted, []
        try:
            found = await self.outbox.apply_and_claim(
                [outcome.change for outcome, _slot in batch], self.now(), now, wanted
            )
        except BaseException:
            self._uncommitted = batch + self._uncommitted
            raise
        await self._settled(batch)
        for name, rows in found.items():
            claimed += len(rows)
            for row in rows:
                outcome = self.attempts.precheck(row, now, self.channels[name])
                if outcome is not None:
                    direct.append(outcome)
                    continue
                self.slots.hold(name)
                self.claims.hold(row.id)
                number = self.circuits[name].begin()
                task = asyncio.create_task(self.sender.send(row, number), name=f"alert-send-{row.id}")
                self._tasks.add(task)
        # Rows whose current channel is not configured (or none is left) cannot be sent by anyone here.
        # Rare (a config change), and the query walks every due row: once per poll interval is enough.
        if sweep or at - self._swept >= self.config.poll_interval.total_seconds():
            self._swept = at
            # A replica that died holding claims: once their lease lapsed they are due again.
            await self.claims.take_over()
            rows = await self.outbox.claim(now, _FALLBACK_BATCH, other_than=self.channels.keys())
            direct.extend(self.attempts.no_channel(row, now) for row in rows)
            claimed += len(rows)
        if direct:
            self._uncommitted.extend((outcome, False) for outcome in direct)
            await self._flush()
        return claimed

    async def _collect(self, *, commit: bool = True) -> None:
        """Take the finished sends' outcomes and commit them (with anything left from a failed commit);
        without `commit` they wait for the next `_fill`, which commits them with its claim."""
        done = {task for task in self._tasks if task.done()}
        self._tasks -= done
        self._uncommitted.extend((task.result(), True) for task in done if not task.cancelled())
        if commit:
            await self._flush()

    async def _flush(self) -> None:
        """Commit every outcome waiting in memory in one transaction; on failure keep them for next time."""
        if not self._uncommitted:
            return
        batch = self._uncommitted
        await self.outbox.apply([outcome.change for outcome, _slot in batch], self.now())
        self._uncommitted = []
        await self._settled(batch)

    async def _settled(self, batch: list[tuple[Outcome, bool]]) -> None:
        """After the commit of `batch`: free its slots, count it, tell `on_sent`."""
        for outcome, slot in batch:
            # Slots free up only once the outcome is committed: in_flight rows never exceed capacity.
            if slot:
                self.claims.done(outcome.row.id)
                self.slots.release(outcome.channel)
            self.observe(outcome)
        if self.on_sent is not None:
            for outcome, _slot in batch:
                if outcome.receipt is not None:
                    await self._notify(outcome)

    async def _notify(self, outcome: Outcome) -> None:
        assert self.on_sent is not None and outcome.receipt is not None
        try:
            result = self.on_sent(outcome.row, outcome.receipt)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("alert_on_sent_failed", alert=outcome.row.id)

    def observe(self, outcome: Outcome) -> None:
        """Count a committed outcome (`sent`, `failed`), log a failure, and export it to the metrics."""
        row = outcome.row
        if outcome.result in ("sent", "duplicate"):
            self.sent += 1
        elif outcome.result == "failed":
            self.failed += 1
            log.error(
                "alert_failed", alert=row.id, kind=row.kind, person_id=row.person_id, error=row_error(outcome)
            )
        if self.metrics is None or outcome.result == "skipped":
            return
        self.metrics.alert(row.kind, outcome.channel or "none", outcome.result)
        if outcome.receipt is not None and outcome.sent_at is not None:
            self.metrics.delivered((outcome.sent_at - row.event_at).total_seconds())
            if outcome.channel_type.startswith("sms"):
                self.metrics.sms_segments(outcome.channel, outcome.receipt.segments)

    def circuit_states(self) -> dict[str, bool]:
        """Channel name → up (circuit closed), for metrics."""
        return self.slots.states()

    def __repr__(self) -> str:
        return f"DeliveryWorker(channels={sorted(self.channels)}, in_flight={self.in_flight})"


def row_error(outcome: Outcome) -> str | None:
    change: Any = outcome.change
    return getattr(change, "error", None)
