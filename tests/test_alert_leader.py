"""Timers, reminders and digests owned by one member: two routers on one store (two replicas' stores on
one database), only the elected one fires, and leadership moving between them neither loses nor repeats
a timer, a group message, a reminder or a digest (both engines: the state they read is in the tables)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from alerts.outbox import Outbox
from alerts.router import Router
from alerts.service import AlertService
from monitor.calendar import Calendars
from monitor.config import Config
from monitor.events import EventBus, IncidentOpened, TargetStateChanged
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


def _service(config: Config, store: SqlStore, clock: Clock, leader: Callable[[], bool]) -> AlertService:
    """A member's alert service on its own store, alerts into the outbox, no delivery worker."""
    return AlertService(
        config,
        store,
        EventBus(),
        Calendars(config.calendars, config.zone),
        clock,
        sink=Outbox(store, clock),
        leader=leader,
    )


async def _groups(store: SqlStore) -> int:
    rows = await store.reader.execute_fetchall("SELECT count(*) FROM alert_timers WHERE key LIKE 'group:%'")
    return int(rows[0][0])


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


async def test_the_leader_catches_up_what_a_dead_member_recorded_or_left_waiting(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """`catch_up` on the leader: an incident a dead member recorded but never routed, and the outage group
    it stored and left waiting out its group_wait (in the table, unknown to the leader's own tick), go out
    at once as the group's one message naming both targets; a second catch-up adds nothing."""
    config = load(alerts_yaml(rules=[{"name": "outage", "on": ["target_down"], "to": ["it_oncall"]}]))
    clock = Clock(T0)
    election = Election()
    async with stores.new(tmp_path / "shared.db") as store, stores.new(tmp_path / "shared.db") as dead_store:
        leader = _service(config, store, clock, election.of("first"))
        await leader.start()
        try:
            # The dead member recorded an incident and died before routing it.
            recorded = await store.open_incident("dvc", T0, "timeout", "")
            # It routed another one, whose group waits out its group_wait (30 s) in the table.
            dead = make_router(config, dead_store, clock, election.of("second"))
            await dead.load()
            await dead.handle_many([IncidentOpened(T0, 99, "csdl", FailureReason.REFUSED)])
            assert await outbox_rows(store) == []

            # The member's lease lapses; the leader catches up once the groups' group_wait has passed.
            clock.advance(timedelta(seconds=31))
            assert await leader.catch_up() == 1, "one message for the outage, at once"
            assert await leader.catch_up() == 0
        finally:
            await leader.stop(grace=0)
        # Both targets went down together: one group, one message naming both (the dead member's key).
        rows = await outbox_rows(store)
        assert [row["key"] for row in rows] == ["incident:99:down:it-em"]
        assert "csdl, dvc" in rows[0]["text"], rows[0]["text"]
        assert recorded != 99


async def test_only_the_leader_rederives_at_start_even_when_it_starts_after_the_others(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """An incident recorded before a restart and never routed: a follower starting first re-derives
    nothing; the leader, starting after it, does, and its outage message goes out once."""
    config = load(alerts_yaml(rules=[{"name": "outage", "on": ["target_down"], "to": ["it_oncall"]}]))
    clock = Clock(T0)
    election = Election()
    async with postgres_stores.new(tmp_path / "shared.db") as store:
        recorded = await store.open_incident("dvc", T0, "timeout", "")
        async with postgres_stores.new(tmp_path / "shared.db") as follower_store:
            follower = _service(config, follower_store, clock, election.of("second"))
            await follower.start()
            try:
                assert await _groups(store) == 0 and await outbox_rows(store) == []
                async with postgres_stores.new(tmp_path / "shared.db") as leader_store:
                    leader = _service(config, leader_store, clock, election.of("first"))
                    await leader.start()
                    try:
                        assert await _groups(store) == 1, "the leader re-derived the outage at its start"
                        clock.advance(timedelta(seconds=31))
                        assert await follower.tick() == 0
                        assert await leader.tick() == 1
                        assert await leader.tick() == 0
                    finally:
                        await leader.stop(grace=0)
            finally:
                await follower.stop(grace=0)
        assert [row["key"] for row in await outbox_rows(store)] == [f"incident:{recorded}:down:it-em"]


async def test_a_member_that_leads_later_rederives_at_its_first_tick_as_leader(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """The lock held by a leader that never comes back (its session lingering past its member row, so no
    member is seen leaving): the member that takes it over re-derives at its first tick as leader, once."""
    config = load(alerts_yaml(rules=[{"name": "outage", "on": ["target_down"], "to": ["it_oncall"]}]))
    clock = Clock(T0)
    election = Election()
    election.current = "gone"
    async with postgres_stores.new(tmp_path / "shared.db") as store:
        recorded = await store.open_incident("dvc", T0, "timeout", "")
        member = _service(config, store, clock, election.of("second"))
        await member.start()
        try:
            assert await member.tick() == 0 and await _groups(store) == 0, "a follower re-derives nothing"
            election.current = "second"
            clock.advance(timedelta(seconds=31))
            # Re-derived (the group, due since T0 + group_wait), then sent by the same tick.
            assert await member.tick() == 1
            assert await member.tick() == 0
        finally:
            await member.stop(grace=0)
        assert [row["key"] for row in await outbox_rows(store)] == [f"incident:{recorded}:down:it-em"]
