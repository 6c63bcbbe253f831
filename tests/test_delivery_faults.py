"""Gateway faults against the running delivery loop (real clock, real fake servers, request logs with
timestamps): a run of 5xx, 429 with Retry-After, absurd Retry-After values, an unreachable ZNS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.channels import ChannelDeps, build_channels
from alerts.config import DeliveryConfig
from alerts.delivery import DeliveryWorker
from alerts.model import AlertKind, AlertStatus, NewAlert
from alerts.outbox import Outbox
from tests.alert_support import esms_config, new_alert, until, zns_config
from tests.fakes import RecordedRequest, ScriptedReply
from tests.fakes.esms import FakeEsms
from tests.fakes.zalo import FakeZalo
from tests.store_engines import StoreFactory

# Tolerance between the worker's clock and the fake's monotonic request log, and for a loaded machine.
_SKEW = 0.05
_SLACK = 1.0


@asynccontextmanager
async def running(
    stores: StoreFactory, tmp_path: Path, configs: list[Any], **delivery: Any
) -> AsyncIterator[DeliveryWorker]:
    """A store, its outbox and a started worker (real clock) over channels built from `configs`."""
    async with stores.new(tmp_path / "store.db") as store:
        deps = ChannelDeps(kv=store)
        channels = build_channels(configs, deps)
        worker = DeliveryWorker(Outbox(store), channels, DeliveryConfig.model_validate(delivery))
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop(grace=1)
            for channel in channels.values():
                await channel.close()
            await deps.aclose()


async def settled(worker: DeliveryWorker, sent: int) -> None:
    """The worker has recorded `sent` alerts as sent (the gateway's acceptance comes a moment earlier)."""
    async with asyncio.timeout(5):
        while (await worker.outbox.counts())[AlertStatus.SENT] < sent:  # noqa: ASYNC110 - a store poll
            await asyncio.sleep(0.01)


def alerts_now(count: int, **overrides: Any) -> list[NewAlert]:
    now = datetime.now(UTC)
    return [new_alert(number, at=now, **overrides) for number in range(1, count + 1)]


def accepted(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    return [request for request in requests if request.status == 200]


@pytest.fixture
async def esms() -> AsyncIterator[FakeEsms]:
    async with FakeEsms() as fake:
        yield fake


async def test_twenty_5xx_in_a_row_delay_delivery_no_more_than_the_backoff(
    stores: StoreFactory, tmp_path: Path, esms: FakeEsms
) -> None:
    """20 consecutive HTTP 500s, then the gateway recovers: everything is delivered within backoff_max."""
    esms.script.extend([ScriptedReply(500, body="Internal Server Error")] * 20)
    config = esms_config(esms, concurrency=4)
    settings = {"backoff_base": "100ms", "backoff_max": "3s", "circuit_cooldown": "2s", "poll_interval": "1s"}
    async with running(stores, tmp_path, [config], **settings) as worker:
        await worker.outbox.enqueue(alerts_now(10))
        await until(lambda: len(esms.messages) == 10, 15, "all 10 alerts delivered")
        circuit = worker.circuits["sms"]
    failures = [request for request in esms.requests if request.status == 500]
    assert len(failures) == 20
    recovered = max(request.replied_ns for request in failures)
    last = max(request.received_ns for request in accepted(esms.requests))
    assert (last - recovered) / 1e9 <= 3.0 + _SLACK, "no alert waited longer than backoff_max after recovery"
    assert circuit.opened >= 1, "the run of failures did open the circuit"
    assert len({message["request_id"] for message in esms.messages}) == 10


async def test_429_pauses_the_channel_for_exactly_retry_after(
    stores: StoreFactory, tmp_path: Path, esms: FakeEsms
) -> None:
    """Five sends in flight get 429 Retry-After 2: nothing is sent for 2 s, then all go; circuit closed."""
    esms.script.extend([ScriptedReply(429, {"Retry-After": "2"}, "Too Many Requests")] * 5)
    config = esms_config(esms, concurrency=5)
    settings = {"backoff_base": "1s", "circuit_failures": 5, "circuit_cooldown": "30s", "poll_interval": "1s"}
    async with running(stores, tmp_path, [config], **settings) as worker:
        await worker.outbox.enqueue(alerts_now(5))
        await until(lambda: len(esms.requests) >= 5, 5, "the five first sends")
        await worker.outbox.enqueue(alerts_now(8)[5:])
        await until(lambda: len(esms.messages) == 8, 6, "all 8 alerts delivered after the pause")
        circuit = worker.circuits["sms"]
        assert circuit.opened == 0 and circuit.up, "a 429 is not a gateway failure"
    limited = [request for request in esms.requests if request.status == 429]
    assert len(limited) == 5
    window_start = min(request.replied_ns for request in limited)
    later = [request for request in esms.requests if request.status != 429]
    first_after = min(request.received_ns for request in later)
    assert (first_after - window_start) / 1e9 >= 2.0 - _SKEW, "no request inside the Retry-After window"
    assert (first_after - window_start) / 1e9 <= 2.0 + _SLACK, "and the channel resumed right after it"


@pytest.mark.parametrize(
    ("retry_after", "pause"),
    [("inf", "backoff"), ("100000000", "backoff_max"), ("-5", "none"), ("in a while", "backoff")],
)
async def test_absurd_retry_after_is_bounded_and_the_fallback_used(
    stores: StoreFactory, tmp_path: Path, esms: FakeEsms, retry_after: str, pause: str
) -> None:
    """429 with Retry-After inf, huge, negative or garbage: the pause stays within [0, backoff_max] and an
    alert with a further channel takes it at once when the first one is paused."""
    async with FakeEsms(api_key=esms.api_key, secret_key=esms.secret_key) as backup:
        esms.script.append(ScriptedReply(429, {"Retry-After": retry_after}, "Too Many Requests"))
        configs = [esms_config(esms, name="sms_main"), esms_config(backup, name="sms_backup")]
        settings = {"backoff_base": "300ms", "backoff_max": "1s", "poll_interval": "1s"}
        async with running(stores, tmp_path, configs, **settings) as worker:
            later = datetime.now(UTC) + timedelta(days=1)
            alert = alerts_now(1, channels=("sms_main", "sms_backup"), deliver_by=later)[0]
            started = time.time()
            await worker.outbox.enqueue([alert])
            await until(lambda: len(esms.messages) + len(backup.messages) == 1, 3, "the alert delivered")
            await settled(worker, 1)
            row = await worker.outbox.get_by_key(alert.dedupe_key)
            paused_for = worker.circuits["sms_main"].paused_until - started
    assert row is not None and row.status is AlertStatus.SENT
    assert paused_for <= 1.0 + _SKEW, "never paused past backoff_max"
    if pause == "none":
        # Retry-After 0: not paused; the same channel at once, and the script is used up so it accepts.
        assert row.channel_used == "sms_main" and len(backup.requests) == 0
    else:
        assert paused_for >= (1.0 if pause == "backoff_max" else 0.3) - _SKEW
        assert row.channel_used == "sms_backup", "paused channel: the fallback at once"
        assert len(esms.requests) == 1


@pytest.mark.parametrize("retry_after", ["inf", "100000000", "-5", "in a while"])
async def test_absurd_retry_after_without_fallback_retries_within_backoff_max(
    stores: StoreFactory, tmp_path: Path, esms: FakeEsms, retry_after: str
) -> None:
    """The same values on an alert with a single channel: retried on it no later than backoff_max."""
    esms.script.append(ScriptedReply(429, {"Retry-After": retry_after}, "Too Many Requests"))
    settings = {"backoff_base": "300ms", "backoff_max": "1s", "poll_interval": "1s"}
    async with running(stores, tmp_path, [esms_config(esms)], **settings) as worker:
        await worker.outbox.enqueue(alerts_now(1))
        await until(lambda: len(esms.messages) == 1, 3, "the alert delivered on its only channel")
        await settled(worker, 1)
        counts = await worker.outbox.counts()
    assert counts[AlertStatus.SENT] == 1 and counts[AlertStatus.IN_FLIGHT] == 0
    first, second = esms.requests
    assert (second.received_ns - first.replied_ns) / 1e9 <= 1.0 + _SLACK


async def test_unreachable_zns_sends_the_unit_heads_alerts_by_sms(
    stores: StoreFactory, tmp_path: Path, esms: FakeEsms
) -> None:
    """ZNS down (connection refused): an alert due now and one whose retry would land after its deliver-by
    go to SMS after one try; one due in four hours after the ZNS retries of the backoff schedule."""
    zalo = FakeZalo()
    await zalo.start()
    refresh_token = zalo.issue_refresh_token()
    await zalo.stop()
    configs = [zns_config(zalo, refresh_token), esms_config(esms)]
    settings = {"backoff_base": "500ms", "fallback_after": 3, "poll_interval": "1s"}
    now = datetime.now(UTC)
    head = {"person_id": "truong-phong", "channels": ("zalo", "sms"), "at": now}
    alerts = [
        new_alert(1, kind=AlertKind.OVERDUE, **head),
        new_alert(2, deliver_by=now + timedelta(milliseconds=400), **head),
        new_alert(3, deliver_by=now + timedelta(hours=4), **head),
    ]
    async with running(stores, tmp_path, configs, **settings) as worker:
        started = time.monotonic_ns()
        await worker.outbox.enqueue(alerts)
        await until(lambda: len(esms.messages) == 3, 6, "all three on SMS")
        await settled(worker, 3)
        rows = [await worker.outbox.get_by_key(alert.dedupe_key) for alert in alerts]
    arrival = {request.json()["RequestId"]: request for request in accepted(esms.requests)}
    urgent, soon, later = (row for row in rows if row is not None)
    assert {row.channel_used for row in (urgent, soon, later)} == {"sms"}
    for row in (urgent, soon):
        assert row.attempts == 2, "one ZNS try, then SMS"
        assert (arrival[row.alert_id].received_ns - started) / 1e9 <= _SLACK
    # Two ZNS retries: 0.5 s + up to 0.5 s jitter, then 1 s + up to 0.5 s.
    assert later.attempts == 4
    assert (arrival[later.alert_id].received_ns - started) / 1e9 <= 2.5 + _SLACK


async def test_alert_waiting_out_a_backoff_moves_on_when_its_channel_is_paused(
    stores: StoreFactory, tmp_path: Path, esms: FakeEsms
) -> None:
    """An alert retrying later on a channel moves to its next channel at once when a 429 pauses that
    channel, instead of waiting for its retry to find the channel paused."""
    async with FakeEsms(api_key=esms.api_key, secret_key=esms.secret_key) as backup:
        esms.script.extend([ScriptedReply(500), ScriptedReply(429, {"Retry-After": "60"})])
        configs = [esms_config(esms, name="sms_main", concurrency=1), esms_config(backup, name="sms_backup")]
        settings = {"backoff_base": "5s", "poll_interval": "1s"}
        later = datetime.now(UTC) + timedelta(days=1)
        waiting, limited = alerts_now(2, channels=("sms_main", "sms_backup"), deliver_by=later)
        async with running(stores, tmp_path, configs, **settings) as worker:
            await worker.outbox.enqueue([waiting])
            await until(lambda: len(esms.requests) == 1 and esms.requests[0].status == 500, 3, "first try")
            await settled_pending(worker, waiting)
            started = time.monotonic_ns()
            await worker.outbox.enqueue([limited])
            await until(lambda: len(backup.messages) == 2, 3, "both alerts on the backup channel")
            await settled(worker, 2)
    assert [request.status for request in esms.requests] == [500, 429]
    assert max(request.received_ns for request in backup.requests) - started < 1.5e9, "well before 5 s"


async def settled_pending(worker: DeliveryWorker, alert: NewAlert) -> None:
    """The alert's failed attempt is recorded: it waits out its backoff."""
    async with asyncio.timeout(5):
        while True:
            row = await worker.outbox.get_by_key(alert.dedupe_key)
            if row is not None and row.status is AlertStatus.PENDING and row.attempts == 1:
                return
            await asyncio.sleep(0.01)


async def test_sends_queued_behind_the_rate_limit_do_not_go_out_inside_a_429_pause(
    stores: StoreFactory, tmp_path: Path, esms: FakeEsms
) -> None:
    """Four alerts claimed at once on a channel limited to 1/s: the first gets 429 Retry-After 2, and the
    ones still waiting for a token are held back instead of being sent inside the pause."""
    esms.script.append(ScriptedReply(429, {"Retry-After": "2"}, "Too Many Requests"))
    config = esms_config(esms, concurrency=4, rate_per_second=1)
    async with running(stores, tmp_path, [config], backoff_base="1s", poll_interval="1s") as worker:
        await worker.outbox.enqueue(alerts_now(4))
        await until(lambda: len(esms.messages) == 4, 10, "all four delivered after the pause")
        await settled(worker, 4)
    limited = next(request for request in esms.requests if request.status == 429)
    # From 0.2 s after the reply (its way back to the worker, on a loaded machine) to the window's end.
    inside = [
        request
        for request in esms.requests
        if limited.replied_ns + 0.2e9 < request.received_ns < limited.replied_ns + 2e9 - _SKEW * 1e9
    ]
    assert inside == [], "nothing sent inside the Retry-After window"
