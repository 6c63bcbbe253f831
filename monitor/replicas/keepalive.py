"""Heartbeats from a thread while this member's event loop is busy, so a long stretch of work is not
mistaken for death.

The heartbeat loop (node.py) runs on the event loop. A first full sync of hundreds of thousands of
dossiers can keep that loop from running it for longer than the lease (bench/scale.py saw 13-44 s with
three members on two cores): the others evicted a member that was working, took its share, and synced its
sources again. This thread writes the same `last_seen_at` when the loop's own heartbeat is overdue, on a
connection of its own, but only while the loop has shown life within `stall_limit`: a loop wedged for good
must still lose its share, so the thread is a grace period, not a second source of truth.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import suppress
from typing import Any

import psycopg

from monitor.store.engine import DEFAULT_CONNECT_TIMEOUT, connect_timeout_seconds

__all__ = ["KeepAlive"]

# The database's own clock, in ms since epoch (as in membership.py).
_BEAT = (
    "UPDATE replica_members SET last_seen_at = (extract(epoch from clock_timestamp())*1000)::bigint"
    " WHERE id = %s AND left_at IS NULL"
)


class KeepAlive:
    """A daemon thread that heartbeats for member `member_id` while the event loop cannot.

    `loop_beat()` is called by the loop after each heartbeat of its own; times are `time.monotonic()`,
    the clock asyncio's loop.time() reads, so node.py compares them with its own.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None,
        member_id: str,
        interval: float,
        stall_limit: float,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.url = url
        # No longer than a beat's turn either: an attempt hung past it would hold the next beat.
        self.connect_timeout = connect_timeout_seconds(min(connect_timeout, interval))
        self.schema = schema
        self.member_id = member_id
        self.interval = interval
        self.stall_limit = stall_limit
        self.last_success: float | None = None
        self.beats = 0
        self._loop_beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended = asyncio.Event()

    def loop_beat(self) -> None:
        """The loop's own heartbeat just went through: the thread has nothing to do for an interval."""
        self._loop_beat = time.monotonic()

    def start(self) -> None:
        """Start the thread (from the event loop, which `stop` then waits on)."""
        self._loop = asyncio.get_running_loop()
        self._ended = asyncio.Event()
        self._stop.clear()
        self._loop_beat = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, name=f"replica-keepalive-{self.member_id}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Stop beating and wait for the thread to end (a beat in flight ends within its statement
        timeout), awaited rather than joined so the event loop never blocks and no executor thread is
        started for it."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with suppress(TimeoutError):
            async with asyncio.timeout(self.interval + 5.0):
                await self._ended.wait()
        # Its last statement has run: the join only waits for the thread's return (microseconds).
        thread.join(0.5)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval / 2):
                silent = time.monotonic() - self._loop_beat
                # The loop beats by itself (silent < 1.5 intervals), or has stalled past the grace period.
                if silent < self.interval * 1.5 or silent > self.stall_limit:
                    continue
                self._beat()
        finally:
            self._close()
            if self._loop is not None:
                with suppress(RuntimeError):  # the loop is closed already: nobody waits
                    self._loop.call_soon_threadsafe(self._ended.set)

    def _beat(self) -> None:
        try:
            if self._conn is None or self._conn.closed:
                options = f"-c search_path={self.schema}" if self.schema else ""
                self._conn = psycopg.connect(
                    self.url,
                    autocommit=True,
                    application_name="tthc-monitor keepalive",
                    connect_timeout=self.connect_timeout,
                    options=options,
                )
            # Bounded, so a hung server never holds the thread past the next beat's turn.
            self._conn.execute(f"SET statement_timeout = {max(1, int(self.interval * 1000))}")
            self._conn.execute(_BEAT, (self.member_id,))
        except psycopg.Error:
            # The loop's own heartbeat reports failures; this one only tries again next round.
            self._close()
            return
        self.last_success = time.monotonic()
        self.beats += 1

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()
