"""Two replicas' outboxes and delivery workers on one PostgreSQL schema, against the fake eSMS: claims
never overlap, a dead replica's claims come back after their lease and go out once more with the same
RequestId, a live replica's claims are never taken.

PostgreSQL only: replicas share a database only there (one daemon owns a SQLite file); the claim lease's
config check needs no database.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.channels import ChannelDeps, build_channels
from alerts.config import DeliveryConfig
from alerts.delivery import DeliveryWorker
from alerts.model import AlertStatus
from alerts.outbox import Outbox
from alerts.outbox_rows import alert_id_for
from monitor.config import ConfigError, load_config_text
from monitor.daemon import Daemon
from monitor.store import SqlStore
from tests.alert_support import esms_config, new_alert, until
from tests.fakes import RecordedRequest
from tests.fakes.esms import FakeEsms
from tests.store_engines import StoreFactory

_LEASE = timedelta(seconds=1.5)
_DELIVERY = DeliveryConfig(poll_interval="200ms", backoff_base="200ms", shutdown_grace="0s")


class Replica:
    """One daemon's share of the alert path: its own store connections, outbox and delivery worker."""

    def __init__(self, store: SqlStore, esms: FakeEsms, concurrency: int) -> None:
        self.store = store
        self.deps = ChannelDeps(kv=store)
        # Long enough that a stalled request is cut off by the test, never by its own timeout.
        config = esms_config(esms, concurrency=concurrency, timeout="60s")
        self.channels = build_channels([config], self.deps)
        self.outbox = Outbox(store, claim_lease=_LEASE)
        self.worker = DeliveryWorker(self.outbox, self.channels, _DELIVERY)

    async def kill(self) -> None:
        """Die mid-send like a replica under kill -9: sends cut off, nothing marked, no more renewals."""
        sends = list(self.worker._tasks)
        loop = self.worker._task
        for task in sends:
            task.cancel()
        await asyncio.gather(*sends, return_exceptions=True)
        assert loop is not None
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        assert self.worker.take_crash() is None and not self.worker.running

    async def close(self) -> None:
        await self.worker.stop(grace=0)
        for channel in self.channels.values():
            await channel.close()
        await self.deps.aclose()


@asynccontextmanager
async def replicas(
    postgres_stores: StoreFactory, tmp_path: Path, esms: FakeEsms, concurrency: int = 8
) -> AsyncIterator[tuple[Replica, Replica]]:
    async with AsyncExitStack() as stack:
        # Same path: the same schema, as two daemons with the same `store.url`.
        first = await stack.enter_async_context(postgres_stores.new(tmp_path / "shared.db"))
        second = await stack.enter_async_context(postgres_stores.new(tmp_path / "shared.db"))
        pair = Replica(first, esms, concurrency), Replica(second, esms, concurrency)
        for replica in pair:
            stack.push_async_callback(replica.close)
        yield pair


def request_id(request: RecordedRequest) -> str:
    """The alert's idempotency key, as eSMS receives it."""
    return str(request.json().get("RequestId"))


def request_ids(esms: FakeEsms) -> Counter[str]:
    """Requests that reached the gateway, per RequestId."""
    return Counter(request_id(request) for request in esms.requests)


async def test_two_replicas_deliver_500_alerts_each_exactly_once(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """Both workers running on one schema: 500 alerts, each sent by one of them, once, none twice."""
    async with FakeEsms() as esms, replicas(postgres_stores, tmp_path, esms) as (first, second):
        for replica in (first, second):
            await replica.worker.start()
        now = first.outbox.now()
        alerts = [new_alert(number, at=now) for number in range(1, 501)]
        # Each replica routes half the events (its share of targets and sources).
        await first.outbox.enqueue(alerts[::2])
        await second.outbox.enqueue(alerts[1::2])
        await until(lambda: first.worker.sent + second.worker.sent >= 500, 60, "500 alerts sent")
        counts = await first.outbox.counts()
        assert counts[AlertStatus.SENT] == 500 and counts[AlertStatus.IN_FLIGHT] == 0
        assert first.worker.sent + second.worker.sent == 500
        assert first.worker.sent > 0 and second.worker.sent > 0, "both replicas share the work"
        sent = request_ids(esms)
        assert set(sent) == {alert_id_for(alert.dedupe_key) for alert in alerts}
        assert max(sent.values()) == 1 and esms.duplicates == 0, "no alert reached the gateway twice"
        assert len(esms.messages) == 500


async def test_a_dead_replicas_claims_come_back_after_the_lease_and_go_out_once(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """While both live, neither takes the other's in-flight rows (leases renewed past their length); one
    dies mid-send: after its lease its rows are sent by the other, with the same RequestId, so the
    gateway delivers each alert once."""
    async with (
        FakeEsms() as esms,
        replicas(postgres_stores, tmp_path, esms, concurrency=4) as (first, second),
    ):
        esms.stalled = True
        for replica in (first, second):
            await replica.worker.start()
        now = first.outbox.now()
        alerts = [new_alert(number, at=now) for number in range(1, 41)]
        await first.outbox.enqueue(alerts)
        await until(lambda: esms.stalled_requests == 8, 10, "both replicas' sends stalled at the gateway")
        # Twice the lease: renewals keep both replicas' claims; nobody takes them over.
        await asyncio.sleep(2 * _LEASE.total_seconds())
        assert esms.stalled_requests == 8
        in_flight = await first.outbox.list(status="in_flight")
        assert len(in_flight) == 8
        held = await asyncio.to_thread(
            postgres_stores.query,
            tmp_path / "shared.db",
            "SELECT claimed_by, count(*) FROM alert_outbox WHERE status = 'in_flight' GROUP BY claimed_by",
        )
        assert dict(held) == {first.outbox.claimer: 4, second.outbox.claimer: 4}

        await first.kill()
        claims = await asyncio.to_thread(
            postgres_stores.query,
            tmp_path / "shared.db",
            "SELECT dedupe_key, claim_expires_at FROM alert_outbox WHERE claimed_by = ?",
            (first.outbox.claimer,),
        )
        dead = {alert_id_for(key) for key, _expiry in claims}
        # When the dead replica's last renewed lease lapses, on the fake's monotonic request clock.
        lapses_ns = time.monotonic_ns() + (max(expiry for _key, expiry in claims) - time.time() * 1000) * 1e6
        # The gateway answers again; the dead replica's requests, already received, are accepted too.
        esms.stalled = False
        esms.release.set()
        await until(lambda: second.worker.sent >= 40, 30, "every alert sent by the survivor")
        counts = await second.outbox.counts()
        assert counts[AlertStatus.SENT] == 40 and counts[AlertStatus.IN_FLIGHT] == 0
        resent = [request.received_ns for request in esms.requests[8:] if request_id(request) in dead]
        assert len(resent) == 4, "the dead replica's alerts are sent again, by the survivor"
        # Not before the lease lapsed (50 ms for the two clocks), and within one poll and some slack after.
        assert min(resent) >= lapses_ns - 50e6 and max(resent) <= lapses_ns + 2e9
        sent = request_ids(esms)
        assert set(sent) == {alert_id_for(alert.dedupe_key) for alert in alerts}
        # Only the dead replica's sends were made twice, each time with the same RequestId.
        assert {key for key, count in sent.items() if count > 1} <= dead and max(sent.values()) <= 2
        delivered = Counter(message["request_id"] for message in esms.messages)
        assert len(delivered) == 40 and max(delivered.values()) == 1, "each alert delivered once"
        assert esms.duplicates == sum(sent.values()) - 40


async def test_claim_leases_run_on_the_database_clock_whatever_each_replicas_clock_says(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """Three claimers on one schema, one clock right, one a minute ahead, one a minute behind: none takes
    another's live claims, and the one ahead holds its claims for the lease, not a minute longer."""
    lease = timedelta(seconds=3)
    skews = {"right": timedelta(0), "ahead": timedelta(minutes=1), "behind": timedelta(minutes=-1)}
    async with AsyncExitStack() as stack:
        outboxes: dict[str, Outbox] = {}
        for name, skew in skews.items():
            store = await stack.enter_async_context(postgres_stores.new(tmp_path / "shared.db"))
            outboxes[name] = Outbox(store, lambda skew=skew: datetime.now(UTC) + skew, claim_lease=lease)
        right, ahead, behind = outboxes["right"], outboxes["ahead"], outboxes["behind"]
        # Due by every claimer's clock, the one behind included.
        created = datetime.now(UTC) - timedelta(minutes=2)
        await right.enqueue([new_alert(number, at=created) for number in range(1, 7)])
        held = {
            name: {row.id for row in await outbox.claim(outbox.now(), 2)} for name, outbox in outboxes.items()
        }
        assert all(len(ids) == 2 for ids in held.values())

        async def remaining_ms() -> dict[str, int]:
            rows = await asyncio.to_thread(
                postgres_stores.query,
                tmp_path / "shared.db",
                "SELECT claimed_by,"
                " max(claim_expires_at - (extract(epoch from clock_timestamp()) * 1000)::bigint)"
                " FROM alert_outbox WHERE status = 'in_flight' GROUP BY claimed_by",
            )
            claimers = {outbox.claimer: name for name, outbox in outboxes.items()}
            return {claimers[claimer]: left for claimer, left in rows}

        # Every lease ends a lease from now by the database's clock, whoever took it.
        assert all(0 < left <= 3000 for left in (await remaining_ms()).values()), await remaining_ms()
        # The one ahead sees the others' leases a minute past their end, yet takes nothing back.
        assert await ahead.release_expired() == 0
        # The one behind renews: its lease is not a minute in the past for the others.
        assert await behind.renew(held["behind"]) == 2
        assert await right.release_expired() == 0
        # The one ahead stops renewing (it died); the others renew, and take its rows back after the lease.
        await asyncio.sleep(2.0)
        assert await right.renew(held["right"]) == 2 and await behind.renew(held["behind"]) == 2
        await asyncio.sleep(1.2)
        assert await right.release_expired() == 2
        pending = {row.id for row in await right.list(status="pending")}
        assert pending == held["ahead"]
        assert set(await remaining_ms()) == {"right", "behind"}


def test_the_claim_lease_is_configured_under_alerts_delivery(tmp_path: Path) -> None:
    """`alerts.delivery.claim_lease` reaches the daemon's outbox (default 15 s); below 1 s is refused at
    its YAML path (renewals every third of it would be most of the outbox's transactions)."""
    base = f"store: {{path: {tmp_path / 'm.db'}}}\ntargets: []\n"
    for extra, lease in (("", 15), ("alerts: {delivery: {claim_lease: 3s}}\n", 3)):
        outbox = Daemon(load_config_text(base + extra, environ={})).alerts.outbox
        assert outbox is not None and outbox.claim_lease == timedelta(seconds=lease)
    with pytest.raises(ConfigError) as caught:
        load_config_text(base + "alerts: {delivery: {claim_lease: 500ms}}\n", environ={})
    assert caught.value.errors == [
        "alerts.delivery.claim_lease: must be at least 1s (claims are renewed every claim_lease/3)"
    ]
