"""The durable alert outbox on both store engines: enqueue, claim, outcomes, recovery, the API and the CLI."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from alerts.model import AlertStatus
from alerts.outbox import Outbox, SentMark, alert_id_for
from monitor.cli import alerts as cli_alerts
from monitor.config import load_config_text
from monitor.daemon import Daemon
from monitor.store import SqliteStore, SqlStore
from monitor.web.app import create_web_app
from tests.alert_support import PHONE, SHORT_CLAIM_LEASE, START, Clock, lapse_claims, new_alert
from tests.store_engines import StoreFactory


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(stores: StoreFactory, tmp_path: Path, clock: Clock) -> AsyncIterator[SqlStore]:
    async with stores.new(tmp_path / "store.db", clock=clock) as opened:
        yield opened


@pytest.fixture
def outbox(store: SqlStore, clock: Clock) -> Outbox:
    return Outbox(store, clock)


def _status_on_disk(stores: StoreFactory, path: Path) -> dict[str, tuple[str, int]]:
    """Read the store through a separate connection: only what is committed is visible."""
    rows = stores.query(path, "SELECT dedupe_key, status, attempts FROM alert_outbox")
    return {key: (status, attempts) for key, status, attempts in rows}


async def test_enqueue_is_durable_and_idempotent(
    outbox: Outbox, stores: StoreFactory, tmp_path: Path
) -> None:
    """Rows are committed when enqueue returns; the same dedupe_key twice stores one row."""
    first, second = new_alert(1), new_alert(2)
    assert await outbox.enqueue([first, second, first]) == 2
    assert outbox.wakeup.is_set()
    outbox.wakeup.clear()
    assert await outbox.enqueue([first]) == 0
    assert not outbox.wakeup.is_set(), "nothing new, no wake-up"
    on_disk = _status_on_disk(stores, tmp_path / "store.db")
    assert on_disk == {first.dedupe_key: ("pending", 0), second.dedupe_key: ("pending", 0)}
    row = await outbox.get_by_key(first.dedupe_key)
    assert row is not None
    assert row.phone == PHONE and row.channel == "sms" and row.channels == ("sms",)
    assert row.template_params["dossier_code"].endswith("0001")
    assert row.alert_id == alert_id_for(first.dedupe_key) and len(row.alert_id) <= 50
    assert PHONE not in repr(row) and row.text not in repr(row)


async def test_claim_takes_due_rows_and_counts_the_attempt(
    outbox: Outbox, stores: StoreFactory, tmp_path: Path, clock: Clock
) -> None:
    """claim() moves only due rows to in_flight, up to the limit, per channel, durably before any send."""
    later = START + timedelta(hours=1)
    await outbox.enqueue(
        [
            new_alert(1),
            new_alert(2),
            new_alert(3, channels=("zalo", "sms")),
            new_alert(4, not_before=later),  # quiet hours: not before 10:00
        ]
    )
    claimed = await outbox.claim(clock(), 1, channel="sms")
    assert [row.dedupe_key for row in claimed] == [new_alert(1).dedupe_key]
    assert claimed[0].status is AlertStatus.IN_FLIGHT and claimed[0].attempts == 1
    on_disk = _status_on_disk(stores, tmp_path / "store.db")
    assert on_disk[new_alert(1).dedupe_key] == ("in_flight", 1)
    rest = await outbox.claim(clock(), 10, channel="sms")
    assert [row.dedupe_key for row in rest] == [new_alert(2).dedupe_key]
    assert await outbox.claim(clock(), 10, channel="sms") == []
    zalo = await outbox.claim(clock(), 10, other_than={"sms"})
    assert [row.channel for row in zalo] == ["zalo"]
    late = await outbox.claim(later, 10)
    assert [row.dedupe_key for row in late] == [new_alert(4).dedupe_key]


async def test_outcomes_move_rows_through_the_plan(outbox: Outbox, clock: Clock) -> None:
    """reschedule keeps or advances the channel (none left past the last); sent and failed stick."""
    await outbox.enqueue([new_alert(1, channels=("zalo", "sms")), new_alert(2), new_alert(3)])
    first, second, third = await outbox.claim(clock(), 10)
    retry_at = clock() + timedelta(seconds=30)
    await outbox.reschedule(first.id, retry_at, "zalo: gateway error http 500", next_channel=False)
    row = await outbox.get(first.id)
    assert row is not None
    assert (row.status, row.channel, row.channel_attempts) == (AlertStatus.PENDING, "zalo", 1)
    assert row.next_attempt_at == retry_at and row.last_error == "zalo: gateway error http 500"
    assert await outbox.claim(clock(), 10) == [], "not due before its retry time"
    again = await outbox.claim(retry_at, 10)
    assert again[0].attempts == 2 and again[0].channel_attempts == 2
    await outbox.reschedule(first.id, retry_at, "zalo refused recipient", next_channel=True)
    moved = await outbox.get(first.id)
    assert moved is not None
    assert (moved.channel, moved.channel_index, moved.channel_attempts) == ("sms", 1, 0)
    assert moved.next_channel is None
    await outbox.mark_sent(second.id, "sms", "sms-1", 2, duplicate=True, at=clock())
    await outbox.mark_failed(third.id, "esms: number 849****678 is blocked (code 99)")
    sent, failed = await outbox.get(second.id), await outbox.get(third.id)
    assert sent is not None and failed is not None
    assert (sent.status, sent.channel_used, sent.provider_message_id, sent.segments) == (
        AlertStatus.SENT,
        "sms",
        "sms-1",
        2,
    )
    assert sent.duplicate_hint and sent.sent_at == clock()
    assert failed.status is AlertStatus.FAILED and "blocked" in (failed.last_error or "")
    claimed = await outbox.claim(retry_at, 10)
    await outbox.reschedule(claimed[0].id, retry_at, "esms: bad format", next_channel=True)
    exhausted = await outbox.get(first.id)
    assert exhausted is not None and exhausted.channel is None


async def test_recover_puts_in_flight_rows_back(store: SqlStore, clock: Clock) -> None:
    """After a crash, rows left in_flight go back to pending, due at once, attempts kept (on PostgreSQL,
    where replicas share the table, once their claim lease lapsed; a restarted outbox's own at once)."""
    crashed = Outbox(store, clock, claim_lease=SHORT_CLAIM_LEASE)
    await crashed.enqueue([new_alert(number) for number in range(1, 6)])
    claimed = await crashed.claim(clock(), 3)
    await crashed.apply([SentMark(claimed[0].id, "sms", "x", 1)])
    # A new process on the same store: nothing in memory survives.
    restarted = Outbox(store, clock)
    if store.dialect == "postgresql":
        assert await restarted.recover() == 0, "the claims of a live replica are not taken"
        await lapse_claims(clock, postgres=True)
    assert await restarted.recover() == 2
    assert restarted.wakeup.is_set()
    counts = await restarted.counts()
    assert counts[AlertStatus.IN_FLIGHT] == 0 and counts[AlertStatus.PENDING] == 4
    assert counts[AlertStatus.SENT] == 1
    again = await restarted.claim(clock(), 10)
    assert sorted(row.attempts for row in again) == [1, 1, 2, 2]
    assert await restarted.recover() == 4


async def test_a_late_outcome_of_a_row_taken_over_leaves_it_to_its_new_holder(
    store: SqlStore, clock: Clock
) -> None:
    """A worker whose claims came back (after a restart on SQLite, once lapsed on PostgreSQL) and were
    claimed again: its late retry or failure does not touch them; a send it made is still recorded."""
    first, second = Outbox(store, clock, claim_lease=SHORT_CLAIM_LEASE), Outbox(store, clock)
    await first.enqueue([new_alert(1), new_alert(2)])
    claimed = await first.claim(clock(), 10)
    await lapse_claims(clock, postgres=store.dialect == "postgresql")
    assert await second.recover() == 2
    taken = await second.claim(clock(), 10)
    assert [row.id for row in taken] == [row.id for row in claimed]
    await first.reschedule(claimed[0].id, clock(), "sms: gateway timeout after 10s")
    await first.mark_failed(claimed[1].id, "sms: number blocked")
    for row in taken:
        stored = await second.get(row.id)
        assert stored is not None and stored.status is AlertStatus.IN_FLIGHT
        assert (stored.last_error or "").startswith("interrupted"), "not the late outcome's error"
    await first.mark_sent(claimed[0].id, "sms", "sms-1")
    sent = await second.get(claimed[0].id)
    assert sent is not None and sent.status is AlertStatus.SENT


async def test_backlog_figures_and_listing(outbox: Outbox, clock: Clock) -> None:
    """pending_by_channel, oldest_pending_age and list() as the metrics, API and CLI use them."""
    await outbox.enqueue([new_alert(1), new_alert(2, channels=("zalo", "sms"))])
    clock.advance(90)
    await outbox.enqueue([new_alert(3)])
    assert await outbox.pending_by_channel() == {"sms": 2, "zalo": 1}
    assert await outbox.oldest_pending_age(clock()) == pytest.approx(90.0)
    claimed = await outbox.claim(clock(), 1, channel="zalo")
    await outbox.mark_failed(claimed[0].id, "zalo refused recipient")
    rows = await outbox.list(since=START, limit=10)
    assert [row.dedupe_key for row in rows] == [new_alert(n).dedupe_key for n in (3, 2, 1)]
    failed = await outbox.list(since=START, status="failed")
    assert [row.id for row in failed] == [claimed[0].id]
    assert await outbox.list(since=clock() + timedelta(seconds=1)) == []
    public = rows[0].public()
    assert set(public) >= {"person_id", "kind", "subject", "status", "channel", "attempts", "last_error"}
    assert "phone" not in public and "zalo_user_id" not in public and "text" not in public


_SECRET_TOKEN = "api-token-Zx81kq2-secret"


async def test_api_lists_alerts_without_personal_data(stores: StoreFactory, tmp_path: Path) -> None:
    """GET /api/v1/alerts behind the daemon's bearer token: filters, counts, no phone or secrets."""
    store_section = json.dumps(stores.config(tmp_path / "store.db"))
    config = load_config_text(
        f"listen: 127.0.0.1:0\napi: {{token: {_SECRET_TOKEN}}}\nstore: {store_section}\ntargets: []\n"
    )
    daemon = Daemon(config)
    await daemon.store.open()
    app = create_web_app(daemon)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        async with client.get("/api/v1/alerts") as response:
            assert response.status == 401
        headers = {"Authorization": f"Bearer {_SECRET_TOKEN}"}
        outbox = daemon.alerts.outbox
        assert outbox is not None
        now = daemon.now()
        await outbox.enqueue([new_alert(1, at=now), new_alert(2, at=now)])
        claimed = await outbox.claim(now, 1)
        await outbox.mark_failed(claimed[0].id, "esms: number 849****678 is blocked (code 99)")
        async with client.get("/api/v1/alerts", params={"since": "1h"}, headers=headers) as response:
            assert response.status == 200
            body = await response.text()
        payload = json.loads(body)
        assert payload["counts"] == {"pending": 1, "in_flight": 0, "sent": 0, "failed": 1}
        assert {item["status"] for item in payload["alerts"]} == {"pending", "failed"}
        item = payload["alerts"][0]
        assert item["person_id"] == "can-bo-07" and item["channel"] == "sms"
        assert item["created_at"].endswith("Z")
        assert PHONE not in body and "0912345678" not in body and _SECRET_TOKEN not in body
        assert "con 4 gio" not in body, "the message text stays out of the API"
        async with client.get("/api/v1/alerts?status=failed&limit=5", headers=headers) as response:
            failed = (await response.json())["alerts"]
        assert [entry["last_error"] for entry in failed] == ["esms: number 849****678 is blocked (code 99)"]
        for query, error in (("status=lost", "status"), ("limit=0", "limit"), ("since=yesterday", "since")):
            async with client.get(f"/api/v1/alerts?{query}", headers=headers) as response:
                assert response.status == 400
                assert (await response.json())["error"].startswith(error)
    finally:
        await client.close()
        await daemon.store.close()


async def test_cli_alerts_lists_the_store_read_only(tmp_path: Path, clock: Clock) -> None:
    """`tthc-monitor alerts --store FILE --status failed` prints rows without phone numbers (SQLite only:
    `--store` names a SQLite file)."""
    path = tmp_path / "store.db"
    async with SqliteStore(path) as store:
        outbox = Outbox(store)
        now = outbox.now()
        await outbox.enqueue([new_alert(1, at=now), new_alert(2, at=now)])
        claimed = await outbox.claim(now, 1)
        await outbox.mark_failed(claimed[0].id, "esms: account balance used up (code 103)")
    parser = argparse.ArgumentParser()
    cli_alerts.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["alerts", "--store", str(path), "--status", "failed", "--since", "1d"])
    out = io.StringIO()
    # asyncio.run inside the CLI needs a thread without a running loop.
    import asyncio

    code = await asyncio.to_thread(cli_alerts.run, args, out)
    text = out.getvalue()
    assert code == 0
    assert "pending 1" in text and "failed 1" in text
    assert "balance used up" in text and "can-bo-07" in text
    assert PHONE not in text
    lines = [line for line in text.splitlines() if "due_soon" in line]
    assert len(lines) == 1 and "failed" in lines[0]
    missing = parser.parse_args(["alerts", "--store", str(tmp_path / "nope.db")])
    assert await asyncio.to_thread(cli_alerts.run, missing, io.StringIO()) == 1
