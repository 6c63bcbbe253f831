"""Timers, reminders and digests owned by one member: two routers on one store (two replicas' stores on
one database), only the elected one fires, and leadership moving between them neither loses nor repeats
a timer, a group message, a reminder or a digest (both engines: the state they read is in the tables)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from alerts.router import Router
from monitor.config import Config
from monitor.events import IncidentOpened, TargetStateChanged
from monitor.model import FailureReason, Health
from monitor.store import SqlStore
from tests.routing_helpers import Clock, alerts_yaml, crossing, load, local, make_router, outbox_rows
from tests.store_engines import StoreFactory

T0 = local("2026-10-06 10:00")


class Election:
    """Which of the two members leads: what the replicas' election answers each member."""

    def __init__(self) -> None:
        self.current = "first"

    def of(self, member: str) -> Callable[[], bool]:
        return lambda: self.current == member


@asynccontextmanager
async def two_members(
    factory: StoreFactory, path: Path, config: Config, clock: Clock, election: Election
) -> AsyncIterator[tuple[SqlStore, Router, Router]]:
    """Two members' routers, each on its own store of one database; yields the first's store and both."""
    async with factory.new(path) as first_store, factory.new(path) as second_store:
        first = make_router(config, first_store, clock, election.of("first"))
        second = make_router(config, second_store, clock, election.of("second"))
        for router in (first, second):
            await router.load()
        yield first_store, first, second


async def test_only_the_leader_fires_and_the_next_leader_fires_what_the_last_one_left(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """A timer started on one member fires on the leader; a group opened under one leader gets its down
    message and reminders from whichever member leads then, each exactly once; the digest of items
    collected on a follower goes out once, from the leader."""
    section = alerts_yaml(
        rules=[
            {"name": "outage", "on": ["target_down"], "to": ["it_oncall"], "repeat": "1h"},
            {"name": "degraded", "on": ["target_degraded"], "to": ["it_oncall"], "after": "15m"},
            {"name": "digest", "on": ["due_soon"], "to": ["one_stop"], "digest": True},
        ]
    )
    clock = Clock(T0)
    election = Election()
    members = two_members(stores, tmp_path / "shared.db", load(section), clock, election)
    async with members as (first_store, first, second):
        # The follower routes its target's event; only the leader fires the timer, read from the table.
        await second.handle_many(
            [TargetStateChanged(T0, "dvc", Health.UP, Health.DEGRADED, FailureReason.SLOW, "slow")]
        )
        assert await second.tick(T0 + timedelta(minutes=16)) == 0, "a follower fires nothing"
        assert await first.tick(T0 + timedelta(minutes=16)) == 1
        assert await first.tick(T0 + timedelta(minutes=17)) == 0

        # An outage routed by the leader; leadership moves before its group_wait ends.
        await first.handle_many([IncidentOpened(T0, 8, "csdl", FailureReason.REFUSED)])
        election.current = "second"
        assert await first.tick(T0 + timedelta(minutes=30)) == 0
        assert await second.tick(T0 + timedelta(minutes=30)) == 1, "the down message, from the new leader"
        assert await second.tick(T0 + timedelta(minutes=65)) == 1, "the first reminder"
        # Back to the first member, whose memory still holds the group as it left it: unannounced.
        election.current = "first"
        assert await first.tick(T0 + timedelta(minutes=66)) == 0, "neither the message nor r1 again"
        assert await first.tick(T0 + timedelta(minutes=121)) == 1, "the second reminder"

        # Due-soon items collected by the follower; the leader sends the digest, once.
        await second.handle_many([crossing(20, at=T0, due_at=T0 + timedelta(days=2))])
        assert await second.digest.tick(local("2026-10-07 07:31")) == 0  # type: ignore[union-attr]
        assert await first.digest.tick(local("2026-10-07 07:31")) == 1  # type: ignore[union-attr]
        election.current = "second"
        assert await second.digest.tick(local("2026-10-07 07:45")) == 0  # type: ignore[union-attr]

        rows = await outbox_rows(first_store)
        assert [row["key"] for row in rows] == [
            f"degraded:dvc:{round(T0.timestamp())}:it-em",
            "incident:8:down:it-em",
            "incident:8:down:it-em:r1",
            "incident:8:down:it-em:r2",
            "digest:desk-binh:2026-10-07",
        ]


async def test_replicas_routing_one_persons_outages_at_once_keep_one_group(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """Two members route outages of the same on-call person at the same moment (their own targets): one
    at a time under the routing lock, each from the group as the other left it, so the leader sends one
    message naming all of them, none lost from the group (PostgreSQL: where replicas share the table)."""
    section = alerts_yaml(rules=[{"name": "outage", "on": ["target_down"], "to": ["it_oncall"]}])
    members = two_members(postgres_stores, tmp_path / "shared.db", load(section), Clock(T0), Election())
    async with members as (first_store, first, second):
        targets = ("dvc", "motcua", "csdl")
        await asyncio.gather(
            *(
                (first, second)[index % 2].handle_many(
                    [IncidentOpened(T0 + timedelta(seconds=index), 10 + index, target, FailureReason.TIMEOUT)]
                )
                for index, target in enumerate(targets)
            )
        )
        assert await first.tick(T0 + timedelta(minutes=5)) == 1
        rows = await outbox_rows(first_store)
        # Keyed by whichever incident joined first: the members took the lock in either order.
        assert len(rows) == 1 and rows[0]["key"] in {f"incident:{10 + n}:down:it-em" for n in range(3)}
        assert all(target in rows[0]["text"] for target in targets), rows[0]["text"]
        groups = await first_store.reader.execute_fetchall(
            "SELECT count(*) FROM alert_timers WHERE key LIKE 'group:%'"
        )
        assert groups == [(1,)]
