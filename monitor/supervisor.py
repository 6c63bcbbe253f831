"""Supervision of the daemon's long-lived tasks: a crash is logged, counted and restarted, never silent.

Every background loop (probe dispatcher, incident writer, store writer, alert router, delivery worker,
dossier sync loops, timers, uptime refresh) runs through `Supervisor.spawn`. The wrapper task it returns
re-runs the loop after a crash with exponential backoff; while a task waits to be restarted it is listed
by `down()`, which /readyz reports by name. A loop that returns normally (it was told to stop) ends its
supervision; cancelling the wrapper stops it for good.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import structlog

__all__ = ["Supervisor"]

log = structlog.get_logger("monitor.supervisor")


class Supervisor:
    """Runs named loops, restarting each after a crash; `restarts` counts restarts per task name."""

    def __init__(self, *, first_backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.restarts: Counter[str] = Counter()
        # Every task name ever spawned, so /metrics shows each one's restart count from zero.
        self.names: set[str] = set()
        self._down: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, name: str, loop: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Start `loop()` under supervision; cancel the returned task to stop it, await it to join it."""
        self.names.add(name)
        task = asyncio.create_task(self._supervise(name, loop), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def down(self) -> dict[str, str]:
        """Tasks that crashed and are waiting for their restart: name -> the error, in crash order."""
        return dict(self._down)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        """Cancel whatever supervised task its owner has not stopped, and wait for them all."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        backoff = self.first_backoff
        try:
            while True:
                started = asyncio.get_running_loop().time()
                try:
                    await loop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Type only: an exception's text may carry a URL with a key (house rule on secrets).
                    self._down[name] = type(exc).__name__
                    log.exception("task_crashed", task=name, restart_in=backoff)
                if asyncio.get_running_loop().time() - started > 10 * self.max_backoff:
                    # It ran well for a long while: this crash is news, not the same one again.
                    backoff = self.first_backoff
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff, backoff * 2)
                self.restarts[name] += 1
                self._down.pop(name, None)
                log.warning("task_restarted", task=name, restarts=self.restarts[name])
        finally:
            self._down.pop(name, None)
