"""`tthc_outbox_oldest_pending_age_seconds` while alerts wait: one held for working hours shows its age
under state="deferred" (it used to read 0), one that is due shows under state="due"."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from alerts.alert_metrics import AlertMetrics
from alerts.channels import ChannelDeps, build_channels
from alerts.delivery import DeliveryWorker
from alerts.outbox import Outbox
from tests.promtool import assert_promtool_accepts
from tests.routing_helpers import Clock, crossing, load, local, make_router, outbox_rows
from tests.store_engines import StoreFactory

GAUGE = "tthc_outbox_oldest_pending_age_seconds"


async def test_deferred_alert_shows_its_age_and_a_due_one_its_wait(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """A due-soon alert found on Saturday waits for Monday 07:00: deferred age grows, due age stays 0;
    on Monday it is due, and its wait counts from 07:00."""
    saturday = local("2026-10-10 10:00")
    clock = Clock(saturday)
    config = load()
    async with stores.new(tmp_path / "alerts.db", clock=clock) as store:
        router = make_router(config, store, clock)
        await router.handle(crossing(1, at=saturday))
        rows = await outbox_rows(store)
        assert rows and {row["not_before"] for row in rows} == {local("2026-10-12 07:00")}, "held"

        deps = ChannelDeps(kv=store)
        registry = CollectorRegistry()
        metrics = AlertMetrics(registry)
        worker = DeliveryWorker(
            Outbox(store, clock), build_channels(config.alerts.channels, deps), clock=clock, metrics=metrics
        )
        try:
            clock.advance(timedelta(hours=2))
            await metrics.refresh()
            assert registry.get_sample_value(GAUGE, {"state": "deferred"}) == 2 * 3600
            assert registry.get_sample_value(GAUGE, {"state": "due"}) == 0

            # Monday 07:10: sendable for 10 minutes (not sent: the worker never ran).
            clock.now = local("2026-10-12 07:10")
            await metrics.refresh()
            assert registry.get_sample_value(GAUGE, {"state": "due"}) == 600
            assert registry.get_sample_value(GAUGE, {"state": "deferred"}) == 0
            await assert_promtool_accepts(generate_latest(registry).decode())
        finally:
            for channel in worker.channels.values():
                await channel.close()
            await deps.aclose()
