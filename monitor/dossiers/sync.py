"""The sync manager: one task per dossier source, incremental fetches and periodic full reconciles.

Nothing is lost, nothing is invented: a failed sync (a SyncError from the source, a listing shorter than
its own total, a full listing suspiciously emptier than the last one, or any unexpected exception)
changes no dossier at all; it is counted, logged and published. A successful batch is compared with
what is stored, written in one transaction, and only then applied in memory and handed to the engine.
A dossier finishes only when its source says so; one missing from `vanish_after` full reconciles in a
row becomes `vanished`, never finished.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from monitor.dossiers.engine import DeadlineEngine
from monitor.dossiers.model import Dossier, DossierStatus, SyncBatch, SyncError, SyncFailure
from monitor.dossiers.store import DossierStore, SyncWrite, TrackedDossier, Upsert
from monitor.events import DossierSyncFailed, DossierSyncRecovered, DossierVanished, EventBus
from monitor.store.durable import until_committed
from monitor.supervisor import Supervisor
from probes.sources import DossierSource

__all__ = ["SourceStats", "SourceTiming", "SyncManager", "SyncOutcome"]

log = structlog.get_logger("monitor.dossiers.sync")

_CLOSED = (DossierStatus.FINISHED, DossierStatus.CANCELLED)
# Incremental fetches ask from a little before the last successful sync began, so a change stamped
# with a slightly skewed clock on the source's side is not missed (re-reading one is harmless).
_SINCE_OVERLAP = timedelta(minutes=1)
# Below this many open dossiers last time, an emptier listing is plausible and not a failure.
_SUSPICIOUS_MINIMUM = 10


@dataclass(frozen=True, slots=True)
class SourceTiming:
    """How often a source is read: incrementally every `interval`, in full every `full_interval`."""

    interval: timedelta
    full_interval: timedelta


# Mutable on purpose: running totals per source that /metrics reads on each scrape.
@dataclass(slots=True)
class SourceStats:
    """What /metrics and the API show about one source."""

    last_success_at: datetime | None = None
    last_success_started: datetime | None = None
    last_duration: float | None = None
    last_full_open: int | None = None
    consecutive_failures: int = 0
    failed_since: datetime | None = None
    failures: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    syncs: int = 0


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """The result of one sync: `reason` is set when it failed (and then nothing changed)."""

    source: str
    full: bool
    reason: str | None = None
    message: str = ""
    listed: int = 0
    changed: int = 0
    finished: int = 0
    vanished: int = 0
    published: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


class SyncManager:
    """Reads every source on its schedule and applies what it returns; see the module docstring."""

    def __init__(
        self,
        sources: Sequence[DossierSource],
        timings: Mapping[str, SourceTiming],
        dossier_store: DossierStore,
        engine: DeadlineEngine,
        bus: EventBus,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        vanish_after: int = 3,
        suspicious_drop: float = 0.5,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor or Supervisor()
        self.sources = {source.name: source for source in sources}
        self.timings = dict(timings)
        self.dossier_store = dossier_store
        self.engine = engine
        self.bus = bus
        self.clock = clock
        self.vanish_after = vanish_after
        self.suspicious_drop = suspicious_drop
        self.stats = {name: SourceStats() for name in self.sources}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        # Between start() and stop(): sources added by a reload start at once.
        self._started = False
        self._locks = {name: asyncio.Lock() for name in self.sources}
        # Replicas: the sources this member syncs (None: every source, one process).
        self.active: set[str] | None = None

    def prime(self) -> None:
        """Take each source's open count from the store, so the first listing after a restart is checked."""
        counts: Counter[str] = Counter(
            t.dossier.source for t in self.dossier_store.tracked.values() if not t.vanished
        )
        for name, stats in self.stats.items():
            if stats.last_full_open is None and counts[name]:
                stats.last_full_open = counts[name]

    # --- one sync ------------------------------------------------------------------------------------

    async def sync_once(self, name: str, *, full: bool) -> SyncOutcome:
        """Fetch from one source and apply the result; never raises for a source problem."""
        source = self.sources[name]
        stats = self.stats[name]
        async with self._locks[name]:
            started = self.clock()
            clock_start = time.perf_counter()
            since = None
            if not full and source.supports_incremental and stats.last_success_started is not None:
                since = stats.last_success_started - _SINCE_OVERLAP
            try:
                batch = await source.fetch(since=since)
                self._check(batch, stats)
                outcome = await self._apply(batch, started)
            except asyncio.CancelledError:
                raise
            except SyncError as exc:
                return self._failed(name, since is None, str(exc.reason), str(exc), started)
            except Exception as exc:
                # Only the type: an exception's text may carry a URL with a key or a record's content.
                return self._failed(name, since is None, SyncFailure.ERROR.value, type(exc).__name__, started)
            stats.syncs += 1
            stats.last_duration = time.perf_counter() - clock_start
            stats.last_success_at = self.clock()
            stats.last_success_started = started
            stats.rejected.update(batch.rejected)
            if batch.duplicates:
                stats.rejected["duplicate"] += batch.duplicates
            if stats.consecutive_failures:
                self.bus.publish(
                    DossierSyncRecovered(
                        at=stats.last_success_at, source=name, failed_since=stats.failed_since or started
                    )
                )
                log.info("dossier_sync_recovered", source=name, failures=stats.consecutive_failures)
            stats.consecutive_failures = 0
            stats.failed_since = None
            if batch.rejected or batch.duplicates:
                log.warning(
                    "dossier_records_rejected",
                    source=name,
                    reasons=dict(batch.rejected),
                    duplicates=batch.duplicates,
                )
            log.info(
                "dossier_sync_done",
                source=name,
                full=batch.full,
                listed=outcome.listed,
                changed=outcome.changed,
                finished=outcome.finished,
                vanished=outcome.vanished,
                published=outcome.published,
                seconds=round(stats.last_duration, 3),
            )
            return outcome

    def _check(self, batch: SyncBatch, stats: SourceStats) -> None:
        if batch.total_reported is not None:
            items = len(batch.dossiers) + sum(batch.rejected.values()) + batch.duplicates
            if items < batch.total_reported:
                raise SyncError(
                    SyncFailure.TRUNCATED,
                    f"listing returned {items} items but reports {batch.total_reported}",
                )
        if batch.full:
            open_count = sum(1 for d in batch.dossiers if d.status not in _CLOSED)
            last = stats.last_full_open
            if last is not None and last >= _SUSPICIOUS_MINIMUM and open_count < self.suspicious_drop * last:
                raise SyncError(
                    SyncFailure.SUSPICIOUS_EMPTY,
                    f"full listing has {open_count} open dossiers, last one had {last}",
                )

    def _failed(self, name: str, full: bool, reason: str, message: str, started: datetime) -> SyncOutcome:
        stats = self.stats[name]
        stats.failures[reason] += 1
        stats.consecutive_failures += 1
        if stats.failed_since is None:
            stats.failed_since = started
        log.warning(
            "dossier_sync_failed",
            source=name,
            reason=reason,
            message=message,
            consecutive=stats.consecutive_failures,
        )
        self.bus.publish(
            DossierSyncFailed(
                at=self.clock(),
                source=name,
                reason=reason,
                message=message,
                consecutive_failures=stats.consecutive_failures,
                last_success_at=stats.last_success_at,
            )
        )
        return SyncOutcome(name, full, reason, message)

    async def _apply(self, batch: SyncBatch, now: datetime) -> SyncOutcome:
        store = self.dossier_store
        engine = self.engine
        tracked, closed = store.tracked, store.closed
        upserts: list[Upsert] = []
        changed: list[Dossier] = []
        finished: list[tuple[Dossier, str | None]] = []
        closed_hashes: dict[str, int] = {}
        seen: set[str] = set()
        for dossier in batch.dossiers:
            code = dossier.code
            seen.add(code)
            known = tracked.get(code)
            if dossier.status in _CLOSED:
                fingerprint = hash(dossier)
                if known is None and closed.get(code) == fingerprint:
                    continue
                # Classified once: a row already finished keeps its first verdict (see the upsert).
                timeliness = engine.classify(dossier) if code not in closed else None
                upserts.append(Upsert(dossier, dossier.status.value, 0, engine.timeline(dossier), timeliness))
                closed_hashes[code] = fingerprint
                if known is not None:
                    finished.append((dossier, timeliness))
                continue
            if known is not None and known.dossier == dossier and not known.missed and not known.vanished:
                continue
            upserts.append(Upsert(dossier, dossier.status.value, 0, engine.timeline(dossier)))
            changed.append(dossier)
        missed: list[tuple[str, int]] = []
        vanished: list[str] = []
        if batch.full:
            for code, known in tracked.items():
                if known.vanished or code in seen or known.dossier.source != batch.source:
                    continue
                count = known.missed + 1
                missed.append((code, count))
                if count >= self.vanish_after:
                    vanished.append(code)
        write = SyncWrite(now, upserts, missed, vanished, batch.source if batch.full else None)
        # A fetched batch is a fact too: kept and retried while the store is locked or full, not re-fetched.
        await until_committed(store.store.facts, "sync", lambda: store.write_sync(write))
        # Committed: now memory follows.
        for code, fingerprint in closed_hashes.items():
            tracked.pop(code, None)
            closed[code] = fingerprint
        for dossier in changed:
            tracked[dossier.code] = TrackedDossier(dossier)
            closed.pop(dossier.code, None)
        for code, count in missed:
            tracked[code].missed = count
        for code in vanished:
            tracked[code].vanished = True
        if batch.full:
            self.stats[batch.source].last_full_open = sum(
                1 for d in batch.dossiers if d.status not in _CLOSED
            )
        engine.drop(vanished)
        for code in vanished:
            dossier = tracked[code].dossier
            self.bus.publish(
                DossierVanished(at=now, code=code, unit_code=dossier.unit_code, source=batch.source)
            )
        if vanished:
            log.warning("dossiers_vanished", source=batch.source, count=len(vanished))
        engine.finished(finished, now)
        published = await engine.update(changed, now)
        return SyncOutcome(
            batch.source,
            batch.full,
            listed=len(batch.dossiers),
            changed=len(upserts),
            finished=len(finished),
            vanished=len(vanished),
            published=published,
        )

    # --- the schedule --------------------------------------------------------------------------------

    def runs(self, name: str) -> bool:
        """Whether this member syncs `name` (every source, unless replicas share them)."""
        return self.active is None or name in self.active

    def start(self) -> None:
        self._stopping.clear()
        self._started = True
        for name in self.sources:
            if self.runs(name):
                self._spawn_source(name)

    async def reassign(self, owned: Collection[str]) -> tuple[set[str], set[str]]:
        """Replicas: sync exactly the sources in `owned` from now on; (gained, lost) source names.

        A source given up stops after its in-flight sync (under its lock, so no batch is half
        applied) and stays open for when it comes back; one taken over starts on its own schedule
        once the caller has loaded its dossiers (`spawn`)."""
        before = {name for name in self.sources if self.runs(name)}
        self.active = {name for name in owned if name in self.sources}
        lost = before - self.active
        for name in lost:
            await self._halt(name)
        return self.active - before, lost

    def spawn(self, names: Iterable[str]) -> None:
        """Start the schedules of sources taken over (after `reassign`)."""
        if self._started:
            for name in names:
                self._spawn_source(name)

    async def _halt(self, name: str) -> None:
        # Under the source's lock its sync is not half-way through a fetch or an apply.
        async with self._locks[name]:
            doomed = [task for task in self._tasks if task.get_name() == f"dossier-sync-{name}"]
            for task in doomed:
                task.cancel()
                self._tasks.remove(task)
        await asyncio.gather(*doomed, return_exceptions=True)

    async def _run_source(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        timing = self.timings[name]
        incremental = self.sources[name].supports_incremental
        interval = timing.interval.total_seconds()
        full_interval = timing.full_interval.total_seconds()
        next_full = loop.time()
        next_incremental = next_full + interval
        while not self._stopping.is_set():
            due = min(next_full, next_incremental) if incremental else next_full
            delay = due - loop.time()
            if delay > 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                continue
            full = loop.time() >= next_full
            try:
                outcome = await self.sync_once(name, full=full)
            except Exception:
                # sync_once handles source failures; this is a bug, but the loop must keep going.
                log.exception("dossier_sync_crashed", source=name)
                outcome = SyncOutcome(name, full, SyncFailure.ERROR.value)
            now = loop.time()
            if outcome.ok and full:
                next_full = now + full_interval
            elif not outcome.ok and full:
                # Retry the reconcile at the incremental pace rather than waiting a whole full interval.
                next_full = now + min(interval, full_interval)
            next_incremental = now + interval

    async def replace_sources(
        self,
        sources: Mapping[str, DossierSource],
        timings: Mapping[str, SourceTiming],
        removed: Iterable[str] = (),
    ) -> None:
        """Apply a reload: stop and close each removed or replaced source (after its in-flight sync),
        then start each new one on its own schedule. Sources not named keep running untouched; a
        replaced source keeps its statistics (its failure streak and last successes)."""
        running = self._started
        removed = list(removed)
        for name in [*removed, *sources]:
            old = self.sources.get(name)
            if old is None:
                continue
            await self._halt(name)
            with suppress(Exception):
                await old.close()
        for name in removed:
            self.sources.pop(name, None)
            self.timings.pop(name, None)
            self.stats.pop(name, None)
            self._locks.pop(name, None)
        for name, source in sources.items():
            self.sources[name] = source
            self.timings[name] = timings[name]
            self.stats.setdefault(name, SourceStats())
            self._locks.setdefault(name, asyncio.Lock())
            if running and self.runs(name):
                self._spawn_source(name)

    def _spawn_source(self, name: str) -> None:
        self._tasks.append(self._supervisor.spawn(f"dossier-sync-{name}", lambda: self._run_source(name)))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop scheduling, give in-flight syncs `grace` seconds, cancel the rest, close sources."""
        self._stopping.set()
        self._started = False
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for source in self.sources.values():
            with suppress(Exception):
                await source.close()
