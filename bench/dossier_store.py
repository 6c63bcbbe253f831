"""The dossier tables alone, on SQLite or PostgreSQL: a sync of 100,000 dossiers, crossings, start-up load.

    python bench/dossier_store.py                                # SQLite file in a temporary folder
    python bench/dossier_store.py --postgres postgresql://...    # a fresh schema there, dropped after
    python bench/dossier_store.py --dossiers 20000 --rounds 3

Measures what the store does for the sync manager and the deadline engine, without the source's HTTP and
parsing (bench/dossiers.py has the whole pipeline): `write_sync` of every dossier as new rows, then of
every dossier changed (the upsert's update path), then an incremental sync of 1,000 changed ones;
`record_crossings` of one crossing per dossier (the storm of a day off declared), the same again (all
already recorded: nothing new); `load()` at start-up. Wall and CPU per step, best of `--rounds`.
Runs against the code installed in the interpreter's environment, so one script measures two checkouts.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.dossiers.model import Dossier, DossierStatus
from monitor.dossiers.store import DossierStore, NewCrossing, SyncWrite, Timeline, Upsert
from monitor.store import SqliteStore

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


def listing(count: int, now: datetime, variant: int) -> list[Upsert]:
    """`count` open dossiers of one source over 40 units, due over the next month; `variant` changes them."""
    upserts = []
    for n in range(count):
        due = START + timedelta(days=n % 30, minutes=15 * (n % 32))
        dossier = Dossier(
            code=f"000.00.{n % 40:02d}.H12-260310-{n:06d}",
            source="sim",
            unit_code=f"000.00.{n % 40:02d}.H12",
            unit_name=f"UBND xã {n % 40}",
            status=DossierStatus.OPEN,
            raw_status="processing",
            procedure_code=f"1.00{n % 9}",
            procedure_name="Đăng ký khai sinh",
            assignee_id=f"u{n % 300}",
            assignee_name=f"Cán bộ {n % 300}",
            received_at=START - timedelta(days=3),
            due_at=due,
            modified_at=now - timedelta(minutes=variant),
        )
        deadline = due.timestamp()
        timeline = Timeline(deadline, (("2d", deadline - 172800), ("overdue", deadline)), deadline - 61200)
        upserts.append(Upsert(dossier, "open", 0, timeline))
    return upserts


def crossings(count: int, threshold: str) -> list[NewCrossing]:
    due = round(START.timestamp())
    return [
        NewCrossing(
            f"000.00.{n % 40:02d}.H12-260310-{n:06d}",
            f"000.00.{n % 40:02d}.H12",
            threshold,
            due,
            due,
            0,
            False,
            False,
            (),
        )
        for n in range(count)
    ]


async def timed(label: str, rounds: int, step: Callable[[int], Awaitable[Any]]) -> None:
    best_wall = best_cpu = float("inf")
    for round_ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        await step(round_)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    print(f"{label:<58} {best_wall:7.2f} s wall {best_cpu:7.2f} s CPU")


async def measure(store: Any, count: int, rounds: int) -> None:
    await store.open()
    dossiers = DossierStore(store)
    try:
        await dossiers.load()
        batches = [listing(count, START + timedelta(minutes=i), i) for i in range(2 * rounds + 1)]
        moments = iter(range(1, 1000))

        def now() -> datetime:
            return START + timedelta(minutes=next(moments))

        await timed(
            f"sync of {count:,} new dossiers (one transaction)",
            1,
            lambda _: dossiers.write_sync(SyncWrite(now(), batches[0], full_source="sim")),
        )
        await timed(
            f"sync of {count:,} changed dossiers",
            rounds,
            lambda r: dossiers.write_sync(SyncWrite(now(), batches[1 + r], full_source="sim")),
        )
        await timed(
            "incremental sync, 1,000 changed dossiers",
            rounds,
            lambda r: dossiers.write_sync(SyncWrite(now(), batches[1 + rounds + r][:1000])),
        )
        await timed(
            f"{count:,} crossings recorded at once (all new)",
            1,
            lambda _: dossiers.record_crossings(crossings(count, "2d")),
        )
        await timed(
            f"{count:,} crossings again (none new)",
            rounds,
            lambda _: dossiers.record_crossings(crossings(count, "2d")),
        )
        await timed(f"load() of {count:,} dossiers at start-up", rounds, lambda _: dossiers.load())
    finally:
        await store.close()


async def main(count: int, rounds: int, postgres: str | None) -> None:
    if postgres is None:
        with tempfile.TemporaryDirectory() as folder:
            print(f"SQLite, {count:,} dossiers")
            await measure(SqliteStore(Path(folder) / "bench.db"), count, rounds)
        return
    import psycopg

    from monitor.store import PostgresStore

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    print(f"PostgreSQL (schema {schema}), {count:,} dossiers")
    try:
        await measure(PostgresStore(postgres, schema=schema), count, rounds)
    finally:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dossiers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL (default: a SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.dossiers, args.rounds, args.postgres))
