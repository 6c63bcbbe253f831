"""The delivery worker against the fake gateway servers: fallback, retries, Retry-After, circuit breaker,
max age, idempotency across a crash, the background loop and its stop, metrics and secrets."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from alerts.alert_metrics import AlertMetrics
from alerts.channel_check import send_test_alert
from alerts.channels import ChannelDeps, build_channels
from alerts.circuit import CircuitState
from alerts.config import AlertsConfig, DeliveryConfig
from alerts.delivery import DeliveryWorker
from alerts.model import AlertStatus
from alerts.outbox import Outbox, OutboxRow
from alerts.sending import outgoing_message
from monitor.cli.alerts import notify_test
from monitor.store import SqliteStore, SqlStore
from tests.alert_support import (
    PHONE,
    SHORT_CLAIM_LEASE,
    START,
    Clock,
    esms_config,
    lapse_claims,
    new_alert,
    zns_config,
)
from tests.fakes.esms import FakeEsms
from tests.fakes.zalo import FakeZalo
from tests.promtool import assert_promtool_accepts
from tests.store_engines import StoreFactory

ESMS_SECRET = "esms-api-key-K7d92mxQ"
ESMS_SECRET_KEY = "esms-secret-key-Vb31pqZ"


class Harness:
    """A store file, its outbox, channels built from configs, a worker and its metrics."""

    def __init__(self, store: SqlStore, clock: Clock, configs: list[Any], delivery: DeliveryConfig) -> None:
        self.store = store
        self.clock = clock
        self.deps = ChannelDeps(kv=store)
        self.channels = build_channels(configs, self.deps)
        self.outbox = Outbox(store, clock, claim_lease=delivery.claim_lease)
        self.registry = CollectorRegistry()
        self.metrics = AlertMetrics(self.registry)
        self.sent: list[tuple[OutboxRow, Any]] = []
        self.worker = DeliveryWorker(
            self.outbox,
            self.channels,
            delivery,
            clock,
            on_sent=lambda row, receipt: self.sent.append((row, receipt)),
            metrics=self.metrics,
        )

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        await self.deps.aclose()

    def count(self, kind: str, channel: str, result: str) -> float:
        value = self.registry.get_sample_value(
            "tthc_alerts_total", {"kind": kind, "channel": channel, "result": result}
        )
        return value or 0.0

    async def row(self, number: int = 1) -> OutboxRow:
        row = await self.outbox.get_by_key(new_alert(number).dedupe_key)
        assert row is not None
        return row


@asynccontextmanager
async def harness(
    stores: StoreFactory, tmp_path: Path, clock: Clock, configs: list[Any], **delivery: Any
) -> AsyncIterator[Harness]:
    async with stores.new(tmp_path / "store.db", clock=clock) as store:
        built = Harness(store, clock, configs, DeliveryConfig.model_validate(delivery))
        try:
            yield built
        finally:
            await built.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def esms() -> AsyncIterator[FakeEsms]:
    async with FakeEsms(api_key=ESMS_SECRET, secret_key=ESMS_SECRET_KEY) as fake:
        yield fake


@pytest.fixture
async def zalo() -> AsyncIterator[FakeZalo]:
    async with FakeZalo() as fake:
        yield fake


def zns_requests(zalo: FakeZalo) -> int:
    return sum(1 for request in zalo.requests if request.path == zalo.ZNS_PATH)


async def test_zns_delivery_with_tracking_id(
    stores: StoreFactory, tmp_path: Path, clock: Clock, zalo: FakeZalo
) -> None:
    """An alert goes out through ZNS with its alert_id as tracking_id; sent, timed and reported."""
    config = zns_config(zalo, zalo.issue_refresh_token())
    async with harness(stores, tmp_path, clock, [config]) as h:
        await h.outbox.enqueue([new_alert(1, channels=("zalo", "sms"))])
        clock.advance(2)
        assert await h.worker.run_once() == 1
        row = await h.row()
        assert row.status is AlertStatus.SENT and row.channel_used == "zalo"
        assert [message["tracking_id"] for message in zalo.messages] == [row.alert_id]
        assert zalo.messages[0]["template_data"] == {"ma_ho_so": row.template_params["dossier_code"],
                                                     "han": "14:00 06/10"}  # fmt: skip
        assert row.provider_message_id == zalo.messages[0]["msg_id"] and row.sent_at == clock()
        assert h.count("due_soon", "zalo", "sent") == 1
        assert h.registry.get_sample_value("tthc_alert_delivery_seconds_sum") == pytest.approx(2.0)
        assert [sent.id for sent, _receipt in h.sent] == [row.id]


async def test_fallback_to_sms_on_invalid_phone(
    stores: StoreFactory, tmp_path: Path, clock: Clock, zalo: FakeZalo, esms: FakeEsms
) -> None:
    """ZNS -108 (invalid phone) is permanent: the alert moves to eSMS at once and goes out there."""
    zalo.invalid_phones.add(PHONE)
    configs = [zns_config(zalo, zalo.issue_refresh_token()), esms_config(esms)]
    async with harness(stores, tmp_path, clock, configs) as h:
        await h.outbox.enqueue([new_alert(1, channels=("zalo", "sms"))])
        await h.worker.run_once()
        row = await h.row()
        assert (row.status, row.channel_used, row.attempts) == (AlertStatus.SENT, "sms", 2)
        assert zns_requests(zalo) == 1 and zalo.messages == []
        assert [message["request_id"] for message in esms.messages] == [row.alert_id]
        assert "Ho so 000.00.12.H12-221005-0001" in esms.messages[0]["content"]
        assert h.count("due_soon", "zalo", "fallback") == 1 and h.count("due_soon", "sms", "sent") == 1
        assert h.registry.get_sample_value("tthc_sms_segments_total", {"channel": "sms"}) == 1


async def test_fallback_after_repeated_transient_failures(
    stores: StoreFactory, tmp_path: Path, clock: Clock, zalo: FakeZalo, esms: FakeEsms
) -> None:
    """Three 5xx on ZNS, each retried after its backoff (the alert is due tomorrow), then on to SMS."""
    zalo.force_status = 500
    configs = [zns_config(zalo, zalo.issue_refresh_token()), esms_config(esms)]
    async with harness(stores, tmp_path, clock, configs, fallback_after=3, circuit_failures=10) as h:
        await h.outbox.enqueue([new_alert(1, channels=("zalo", "sms"), deliver_by=START + timedelta(days=1))])
        delays = []
        for _attempt in range(2):
            await h.worker.run_once()
            row = await h.row()
            assert row.status is AlertStatus.PENDING and row.channel == "zalo"
            delay = (row.next_attempt_at - clock()).total_seconds()
            delays.append(delay)
            assert await h.worker.run_once() == 0, "nothing is due before the backoff ends"
            clock.advance(delay)
        await h.worker.run_once()
        row = await h.row()
        assert (row.status, row.channel_used) == (AlertStatus.SENT, "sms")
        assert zns_requests(zalo) == 3 and len(esms.messages) == 1
        # Exponential with jitter: 5 s + [0, 5 s), then 10 s + [0, 5 s).
        assert 5 <= delays[0] < 10 and 10 <= delays[1] < 15
        assert h.count("due_soon", "zalo", "retried") == 2 and h.count("due_soon", "zalo", "fallback") == 1


async def test_rate_limited_retry_after_is_respected(
    stores: StoreFactory, tmp_path: Path, clock: Clock, esms: FakeEsms
) -> None:
    """HTTP 429 with Retry-After 120: the next attempt is exactly 120 s later and the channel pauses."""
    esms.rate_limited, esms.retry_after = True, 120
    async with harness(stores, tmp_path, clock, [esms_config(esms)]) as h:
        await h.outbox.enqueue([new_alert(1)])
        started = clock()
        await h.worker.run_once()
        row = await h.row()
        assert row.next_attempt_at - started == timedelta(seconds=120)
        assert "rate limited" in (row.last_error or "")
        await h.outbox.enqueue([new_alert(2)])
        clock.advance(60)
        assert await h.worker.run_once() == 0, "the channel is paused until Retry-After has passed"
        assert len(esms.requests) == 1
        assert h.registry.get_sample_value("tthc_channel_up", {"channel": "sms"}) == 1
        esms.rate_limited = False
        clock.advance(60)
        assert await h.worker.run_once() == 2
        assert {message["request_id"] for message in esms.messages} == {
            (await h.row(1)).alert_id,
            (await h.row(2)).alert_id,
        }


async def test_gateway_down_then_up_circuit_opens_and_half_opens(
    stores: StoreFactory, tmp_path: Path, clock: Clock, esms: FakeEsms
) -> None:
    """Down: three failures open the circuit for the backoff base, doubling per failed trial; then all go."""
    esms.down = True
    config = esms_config(esms, concurrency=1)
    async with harness(stores, tmp_path, clock, [config], circuit_failures=3, circuit_cooldown="60s") as h:
        await h.outbox.enqueue([new_alert(number) for number in range(1, 6)])
        await h.worker.run_once()
        circuit = h.worker.circuits["sms"]
        assert circuit.state(clock.epoch()) is CircuitState.OPEN
        assert len(esms.requests) == 3, "no more tries once the circuit is open"
        assert h.registry.get_sample_value("tthc_channel_up", {"channel": "sms"}) == 0
        # Open for backoff_base (5 s) the first time, then 10 s, 20 s... up to circuit_cooldown.
        for cooldown, requests in ((5, 4), (10, 5), (20, 6)):
            clock.advance(cooldown - 0.5)
            assert await h.worker.run_once() == 0 and len(esms.requests) == requests - 1
            clock.advance(0.5)
            assert circuit.state(clock.epoch()) is CircuitState.HALF_OPEN
            await h.worker.run_once()
            assert len(esms.requests) == requests, "half-open: exactly one try"
            assert circuit.state(clock.epoch()) is CircuitState.OPEN, "the try failed: open again"
        esms.down = False
        clock.advance(40)
        await h.worker.run_once()
        assert circuit.state(clock.epoch()) is CircuitState.CLOSED
        counts = await h.outbox.counts()
        assert counts[AlertStatus.SENT] == 5
        assert len({message["request_id"] for message in esms.messages}) == len(esms.messages) == 5
        await h.metrics.refresh()
        assert h.registry.get_sample_value("tthc_channel_up", {"channel": "sms"}) == 1
        assert h.registry.get_sample_value("tthc_outbox_pending", {"channel": "sms"}) == 0


async def test_open_circuit_sends_alerts_to_their_next_channel(
    stores: StoreFactory, tmp_path: Path, clock: Clock, esms: FakeEsms
) -> None:
    """AuthError makes a channel unavailable: this alert and later ones move to the next channel at once."""
    configs = [esms_config(esms, name="sms_main", api_key="wrong-key-123456"), esms_config(esms)]
    async with harness(stores, tmp_path, clock, configs) as h:
        await h.outbox.enqueue([new_alert(1, channels=("sms_main", "sms"))])
        await h.worker.run_once()
        assert (await h.row(1)).channel_used == "sms"
        assert h.registry.get_sample_value("tthc_channel_up", {"channel": "sms_main"}) == 0
        requests = len(esms.requests)
        await h.outbox.enqueue([new_alert(2, channels=("sms_main", "sms"))])
        await h.worker.run_once()
        second = await h.row(2)
        assert (second.status, second.channel_used) == (AlertStatus.SENT, "sms")
        assert len(esms.requests) == requests + 1, "no request to the unavailable channel"
        assert "unavailable" in (second.last_error or "")


async def test_channel_skipped_when_recipient_lacks_its_address(
    stores: StoreFactory, tmp_path: Path, clock: Clock, zalo: FakeZalo, esms: FakeEsms
) -> None:
    """No Zalo user id: zalo_oa is skipped without a request; SMS delivers."""
    oa = {
        "type": "zalo_oa",
        "name": "oa",
        "app_id": zalo.app_id,
        "secret_key": zalo.secret_key,
        "refresh_token": zalo.issue_refresh_token(),
        "oauth_url": zalo.oauth_url,
        "oa_url": zalo.oa_url,
    }
    from pydantic import TypeAdapter

    from alerts.channels import ChannelConfig

    configs = [TypeAdapter(ChannelConfig).validate_python(oa), esms_config(esms)]
    async with harness(stores, tmp_path, clock, configs) as h:
        await h.outbox.enqueue([new_alert(1, channels=("oa", "sms"), zalo_user_id=None)])
        await h.worker.run_once()
        row = await h.row()
        assert (row.status, row.channel_used) == (AlertStatus.SENT, "sms")
        assert zalo.requests == []
        assert h.count("due_soon", "oa", "fallback") == 0


async def test_max_age_fails_with_last_error(
    stores: StoreFactory, tmp_path: Path, clock: Clock, esms: FakeEsms
) -> None:
    """An alert not delivered within max_age is failed, keeping the gateway's last error."""
    esms.down = True
    async with harness(stores, tmp_path, clock, [esms_config(esms)], max_age="1h", circuit_failures=100) as h:
        await h.outbox.enqueue([new_alert(1)])
        for _round in range(40):
            await h.worker.run_once()
            row = await h.row()
            if row.status is not AlertStatus.PENDING:
                break
            clock.now = max(clock.now, row.next_attempt_at)
        assert row.status is AlertStatus.FAILED
        assert row.last_error is not None
        assert row.last_error.startswith("not delivered within 1h") and "http 500" in row.last_error
        assert clock() - row.created_at <= timedelta(hours=1)
        assert h.count("due_soon", "sms", "failed") == 1 and h.worker.failed == 1


async def test_same_alert_twice_is_one_row_and_one_send(
    stores: StoreFactory, tmp_path: Path, clock: Clock, esms: FakeEsms
) -> None:
    """Enqueueing the same dedupe_key again (e.g. re-derived after a restart) never sends twice."""
    async with harness(stores, tmp_path, clock, [esms_config(esms)]) as h:
        assert await h.outbox.enqueue([new_alert(1)]) == 1
        assert await h.outbox.enqueue([new_alert(1)]) == 0
        await h.worker.run_once()
        assert await h.outbox.enqueue([new_alert(1)]) == 0
        clock.advance(3600)
        assert await h.worker.run_once() == 0
        assert len(esms.messages) == 1 and esms.duplicates == 0


async def test_recover_after_crash_resends_and_gateways_deduplicate(
    stores: StoreFactory, tmp_path: Path, clock: Clock, esms: FakeEsms, zalo: FakeZalo
) -> None:
    """Rows left in_flight by a crash are resent; eSMS (RequestId) and ZNS (tracking_id) drop the repeats."""
    configs = [esms_config(esms), zns_config(zalo, zalo.issue_refresh_token())]
    async with harness(stores, tmp_path, clock, configs, claim_lease=SHORT_CLAIM_LEASE) as h:
        await h.outbox.enqueue([new_alert(1), new_alert(2), new_alert(3, channels=("zalo",))])
        # The crashed process had claimed all three and reached the gateways with two of them.
        claimed = {row.channel: row for row in await h.outbox.claim(clock(), 10) if row.id != 2}
        await h.channels["sms"].send(outgoing_message(claimed["sms"]))
        await h.channels["zalo"].send(outgoing_message(claimed["zalo"]))
        assert (await h.outbox.counts())[AlertStatus.IN_FLIGHT] == 3
    if stores.postgres:
        # Replicas share the table: the crashed process's claims come back once their lease lapsed.
        await lapse_claims(clock, postgres=True)
    async with harness(stores, tmp_path, clock, configs) as restarted:
        assert await restarted.outbox.recover() == 3
        await restarted.worker.run_once()
        counts = await restarted.outbox.counts()
        assert counts[AlertStatus.SENT] == 3
        assert esms.duplicates == 1 and zalo.duplicates == 1
        assert len(esms.messages) == 2 and len(zalo.messages) == 1
        first = await restarted.row(1)
        assert first.duplicate_hint and first.attempts == 2
        assert restarted.count("due_soon", "sms", "duplicate") == 1


async def test_loop_wakes_on_enqueue_and_stops_in_three_steps(stores: StoreFactory, tmp_path: Path) -> None:
    """The running worker sends as soon as alerts are enqueued (not at its poll), and stop() leaves sends
    cut off after the grace period in_flight for recovery."""
    async with (
        FakeEsms(api_key=ESMS_SECRET, secret_key=ESMS_SECRET_KEY) as esms,
        stores.new(tmp_path / "store.db") as store,
    ):
        deps = ChannelDeps(kv=store)
        channels = build_channels([esms_config(esms)], deps)
        outbox = Outbox(store)
        worker = DeliveryWorker(outbox, channels, DeliveryConfig(poll_interval="30s"))
        try:
            await worker.start()
            now = outbox.now()
            started = asyncio.get_running_loop().time()
            await outbox.enqueue([new_alert(1, at=now)])
            while not esms.messages:
                assert asyncio.get_running_loop().time() - started < 5
                await asyncio.sleep(0.01)
            assert asyncio.get_running_loop().time() - started < 2, "woken by the enqueue, not the poll"
            esms.stalled = True
            await outbox.enqueue([new_alert(2, at=now)])
            await asyncio.wait_for(esms.stalling.wait(), 5)
            await worker.stop(grace=0.2)
            assert not worker.running
            row = await outbox.get_by_key(new_alert(2).dedupe_key)
            assert row is not None and row.status is AlertStatus.IN_FLIGHT
            first = await outbox.get_by_key(new_alert(1).dedupe_key)
            assert first is not None and first.status is AlertStatus.SENT
            assert await outbox.recover() == 1
        finally:
            esms.release.set()
            for channel in channels.values():
                await channel.close()
            await deps.aclose()


async def test_metrics_pass_promtool_and_secrets_stay_out(
    stores: StoreFactory, tmp_path: Path, clock: Clock, zalo: FakeZalo, esms: FakeEsms
) -> None:
    """Every alert series is exposed and valid; no phone, key or token in metrics or logs."""
    refresh_token = zalo.issue_refresh_token()
    zalo.invalid_phones.add(PHONE)
    configs = [zns_config(zalo, refresh_token), esms_config(esms)]
    with capture_logs() as logs:
        async with harness(stores, tmp_path, clock, configs) as h:
            await h.outbox.enqueue([new_alert(n, channels=("zalo", "sms")) for n in range(1, 4)])
            await h.worker.run_once()
            await h.outbox.enqueue([new_alert(9, not_before=clock() + timedelta(hours=1))])
            clock.advance(60)
            await h.metrics.refresh()
            text = generate_latest(h.registry).decode()
    for name in (
        "tthc_alerts_total",
        "tthc_alert_delivery_seconds_bucket",
        "tthc_outbox_pending",
        "tthc_outbox_oldest_pending_age_seconds",
        "tthc_channel_up",
        "tthc_sms_segments_total",
        "tthc_zalo_token_expiry_timestamp_seconds",
        "tthc_zalo_reauthorization_required",
    ):
        assert f"\n{name}" in text, name
    assert 'tthc_outbox_pending{channel="sms"} 1.0' in text
    assert 'tthc_alerts_total{channel="sms",kind="due_soon",result="sent"} 3.0' in text
    secrets = [ESMS_SECRET, ESMS_SECRET_KEY, refresh_token, zalo.secret_key, *zalo.access_tokens]
    logged = repr(logs)
    for value in [*secrets, PHONE, "0912345678"]:
        assert value not in text and value not in logged
    assert any(entry["event"] == "alert_sent" for entry in logs)
    await assert_promtool_accepts(text)


async def test_send_test_and_notify_test(
    stores: StoreFactory, tmp_path: Path, clock: Clock, zalo: FakeZalo, esms: FakeEsms
) -> None:
    """notify-test goes through the outbox: recorded, tried on each channel once, result printed."""
    zalo.invalid_phones.add(PHONE)
    configs = [zns_config(zalo, zalo.issue_refresh_token(), templates={}), esms_config(esms)]
    async with harness(stores, tmp_path, clock, configs) as h:
        row = await send_test_alert(
            h.worker, "can-bo-07", phone=PHONE, zalo_user_id=None, channels=["zalo", "sms"]
        )
        assert (row.status, row.channel_used, row.kind) == (AlertStatus.SENT, "sms", "test")
        assert "Tin nhan thu nghiem" in esms.messages[-1]["content"]
        esms.down = True
        failed = await send_test_alert(
            h.worker, "can-bo-07", phone=PHONE, zalo_user_id=None, channels=["sms"]
        )
        assert failed.status is AlertStatus.FAILED and "http 500" in (failed.last_error or "")
        assert failed.attempts == 1


async def test_notify_test_records_in_the_store_file(tmp_path: Path, esms: FakeEsms) -> None:
    """`notify-test --store FILE` sends through the file's outbox and prints the result (SQLite only:
    the CLI's `--store` names a SQLite file)."""
    alerts = AlertsConfig.model_validate(
        {
            "channels": [esms_config(esms).model_dump(mode="python") | {
                "api_key": ESMS_SECRET, "secret_key": ESMS_SECRET_KEY}],
            "directory": {"people": [{"id": "can-bo-07", "phone": "0912 345 678", "channels": ["sms"]}]},
        }
    )  # fmt: skip
    out = io.StringIO()
    assert await notify_test(tmp_path / "store.db", alerts, "can-bo-07", None, out) == 0
    assert "sent test alert" in out.getvalue() and "via sms" in out.getvalue()
    assert esms.messages[-1]["phone"] == PHONE
    assert await notify_test(tmp_path / "store.db", alerts, "nobody", None, io.StringIO()) == 1
    async with SqliteStore(tmp_path / "store.db") as store:
        assert (await Outbox(store).counts())[AlertStatus.SENT] == 1
