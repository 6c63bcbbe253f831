"""The event bus is bounded: a full subscriber queue drops ordinary events (counted) while durable facts
wait for room, and closing a full subscription still ends its consumer after it has drained."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from monitor.events import EventBus, IncidentOpened, TargetStateChanged
from monitor.model import FailureReason, Health

NOW = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)


def _changed(target: str) -> TargetStateChanged:
    return TargetStateChanged(NOW, target, Health.UP, Health.DOWN, FailureReason.TIMEOUT)


async def test_a_full_queue_drops_ordinary_events_and_makes_durable_facts_wait() -> None:
    """Past the bound, publish() drops and counts; publish_durable() waits until the consumer takes one."""
    bus = EventBus(queue_limit=3)
    subscription = bus.subscribe("alerts")
    for index in range(5):
        bus.publish(_changed(f"t{index}"))
    assert (subscription.backlog, bus.dropped) == (3, 2)
    incident = IncidentOpened(NOW, 1, "portal", FailureReason.TIMEOUT)
    durable = asyncio.create_task(bus.publish_durable(incident))
    await asyncio.sleep(0.01)
    assert not durable.done(), "a durable fact waits for room instead of being dropped"
    first = await subscription.get()
    await asyncio.wait_for(durable, 1)
    subscription.close()
    rest = [event async for event in subscription]
    assert [getattr(e, "target", None) for e in [first, *rest]] == ["t0", "t1", "t2", "portal"]
    assert bus.dropped == 2
