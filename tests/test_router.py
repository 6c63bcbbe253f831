"""The alert router on a real SQLite store and the real outbox: recipients, timing, timers, digest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.router import Router
from monitor.events import (
    DossierSyncFailed,
    DossierSyncRecovered,
    Event,
    IncidentClosed,
    IncidentOpened,
    TargetStateChanged,
)
from monitor.model import FailureReason, Health
from monitor.store import SqlStore
from tests.fakes.esms import FakeEsms
from tests.routing_helpers import (
    CODE,
    UNIT,
    Clock,
    alerts_yaml,
    crossing,
    load,
    local,
    make_router,
    outbox_rows,
    running_service,
    to_fake_sms,
    wait_for_sms,
)
from tests.store_engines import StoreFactory

T0 = local("2026-10-06 10:00")  # a Tuesday, a working day


@pytest.fixture
async def store(stores: StoreFactory, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with stores.new(tmp_path / "alerts.db") as opened:
        yield opened


async def handle_all(router: Router, events: Sequence[Event]) -> int:
    return sum([await router.handle(event) for event in events])


async def test_due_soon_goes_to_the_assignee_and_the_units_one_stop_desk(store: SqlStore) -> None:
    """A due-soon crossing alerts the matched assignee and the one-stop desk of that unit, nobody else."""
    router = make_router(load(), store, Clock(T0))
    assert await router.handle(crossing(41)) == 2
    rows = await outbox_rows(store)
    assert [(row["key"], row["kind"], row["severity"]) for row in rows] == [
        ("crossing:41:officer-an", "due_soon", "warning"),
        ("crossing:41:desk-binh", "due_soon", "warning"),
    ]
    assert rows[0]["text"] == (
        f"[TTHC] Hồ sơ {CODE} (Cấp GCN QSDĐ) còn 2 ngày làm việc, hạn 10:00 08/10. "
        "Nếu không kịp, gửi Phiếu xin lỗi trước hạn."
    )
    assert rows[0]["channels"] == '["log", "sms"]' and rows[0]["phone"] == "84912345678"
    assert rows[0]["not_before"] == T0
    # The same crossing again (a re-publish, a second consumer): nothing new.
    assert await router.handle(crossing(41)) == 0


async def test_last_warning_escalates_to_the_unit_head_with_the_apology_reminder(store: SqlStore) -> None:
    """The last threshold adds the unit head; the text says when the apology slip is due."""
    router = make_router(load(), store, Clock(T0))
    early = crossing(5, threshold="4h", left=timedelta(hours=12), due_at=local("2026-10-07 15:30"), last=True)
    late = crossing(6, threshold="4h", left=timedelta(hours=4), due_at=local("2026-10-06 14:00"), last=True)
    assert await handle_all(router, [early, late]) == 6
    rows = await outbox_rows(store)
    assert [row["person"] for row in rows] == ["officer-an", "desk-binh", "head-cuong"] * 2
    assert {row["kind"] for row in rows} == {"last_warning"}
    assert rows[2]["text"] == (
        f"[TTHC] Cảnh báo cuối: hồ sơ {CODE} (Cấp GCN QSDĐ, Sở NN&MT) còn 1 ngày 4 giờ làm việc, "
        "hạn 15:30 07/10. Nếu không kịp, gửi Phiếu xin lỗi trước 15:30 06/10."
    )
    # Late once less than 30 minutes are left before the due time.
    assert rows[2]["deliver_by"] == local("2026-10-07 15:00") and rows[5]["deliver_by"] == local(
        "2026-10-06 13:30"
    )
    # Less than a working day left: the apology slip is due now.
    assert rows[5]["text"].endswith("hạn 14:00 06/10. Nếu không kịp, gửi Phiếu xin lỗi ngay.")


async def test_overdue_goes_once_to_the_unit_head_and_leaders_saying_whether_an_outage_overlapped(
    store: SqlStore,
) -> None:
    """Overdue: unit head and leaders only, once, with the outage verdict in the text."""
    router = make_router(load(), store, Clock(T0))
    during_outage = crossing(9, threshold="overdue", left=timedelta(0), due_at=T0, outage=True)
    assert await router.handle(during_outage) == 2
    assert await router.handle(during_outage) == 0
    assert (
        await router.handle(crossing(10, threshold="overdue", left=timedelta(0), due_at=T0, outage=False))
        == 2
    )
    rows = await outbox_rows(store)
    assert [(row["key"], row["kind"]) for row in rows] == [
        ("crossing:9:head-cuong", "overdue"),
        ("crossing:9:leader-dung", "overdue"),
        ("crossing:10:head-cuong", "overdue"),
        ("crossing:10:leader-dung", "overdue"),
    ]
    assert rows[0]["text"] == (
        f"[TTHC] Hồ sơ {CODE} (Cấp GCN QSDĐ, Sở NN&MT) đã quá hạn từ 10:00 06/10. "
        "Có sự cố hệ thống trước hạn (#7). Cần gửi Phiếu xin lỗi và hẹn lại ngày trả."
    )
    assert "Không có sự cố hệ thống trước hạn." in rows[2]["text"]


async def test_an_outage_is_one_message_per_incident_and_ignores_quiet_hours(store: SqlStore) -> None:
    """DOWN transitions alert nobody; an incident alerts it_oncall after group_wait, its end at once."""
    night = local("2026-10-06 23:10")
    router = make_router(load(), store, Clock(night))
    down = TargetStateChanged(
        night, "dvc", Health.UP, Health.DOWN, FailureReason.TIMEOUT, "timeout after 10s"
    )
    assert await router.handle(down) == 0
    # Grouping: the message waits group_wait (30 s) for other targets of the same outage.
    assert (
        await router.handle(IncidentOpened(night, 3, "dvc", FailureReason.TIMEOUT, "timeout after 10s")) == 0
    )
    assert await router.handle(IncidentOpened(night, 3, "dvc", FailureReason.TIMEOUT, "again")) == 0
    assert await router.tick(night + timedelta(seconds=29)) == 0
    assert await router.tick(night + timedelta(seconds=30)) == 1
    back = night + timedelta(minutes=47)
    assert await router.handle(IncidentClosed(back, 3, "dvc", night, 47 * 60)) == 1
    rows = await outbox_rows(store)
    assert [(row["key"], row["severity"], row["not_before"]) for row in rows] == [
        ("incident:3:down:it-em", "critical", night + timedelta(seconds=30)),
        ("incident:3:up:it-em", "critical", back),
    ]
    assert rows[0]["channels"] == '["sms", "log"]'
    assert [row["deliver_by"] for row in rows] == [row["not_before"] for row in rows], "late at once"
    assert rows[0]["text"] == "[TTHC] dvc NGỪNG HOẠT ĐỘNG từ 23:10 06/10: quá thời gian chờ. Sự cố #3."
    assert rows[1]["text"] == "[TTHC] dvc đã hoạt động lại lúc 23:57 06/10, gián đoạn 47 phút. Sự cố #3."


async def test_quiet_hours_delay_non_critical_alerts_to_their_end(store: SqlStore) -> None:
    """An info alert at 22:00 waits until 06:30 the next day; a critical one does not."""
    section = alerts_yaml(
        rules=[
            {
                "name": "info",
                "on": ["target_down"],
                "to": ["it_oncall"],
                "severity": "info",
                "targets": ["a"],
            },
            {"name": "loud", "on": ["target_down"], "to": ["it_oncall"], "targets": ["b"]},
            {"name": "night-owl", "on": ["target_down"], "to": ["it_oncall"], "quiet_hours": False},
        ]
    )
    at = local("2026-10-06 22:00")
    router = make_router(load(section), store, Clock(at))
    await router.handle(IncidentOpened(at, 1, "a", None))
    await router.handle(IncidentOpened(at, 2, "b", None))
    # Each rule groups its own outages; each group's message waits group_wait (30 s).
    assert await router.tick(at + timedelta(seconds=30)) == 2
    await router.handle(IncidentOpened(local("2026-10-07 05:00"), 3, "c", None))
    assert await router.tick(local("2026-10-07 05:00") + timedelta(seconds=30)) == 1
    rows = await outbox_rows(store)
    assert [(row["key"], row["severity"], row["not_before"]) for row in rows] == [
        ("incident:1:down:it-em", "info", local("2026-10-07 06:30")),
        ("incident:2:down:it-em", "critical", at + timedelta(seconds=30)),
        ("incident:3:down:it-em", "critical", local("2026-10-07 05:00") + timedelta(seconds=30)),
    ]
    assert router.policy.quiet_end(local("2026-10-07 05:59")) == local("2026-10-07 06:30")
    assert router.policy.quiet_end(local("2026-10-07 12:00")) is None


async def test_working_hours_only_waits_for_the_units_next_working_moment(store: SqlStore) -> None:
    """Due-soon alerts (working hours only by default) found on Saturday go out Monday 07:00."""
    saturday = local("2026-10-10 10:00")
    router = make_router(load(), store, Clock(saturday))
    await router.handle(crossing(1, at=saturday))
    evening = local("2026-10-06 18:00")
    router.clock = Clock(evening)
    await router.handle(crossing(2, at=evening))
    rows = await outbox_rows(store)
    assert {row["not_before"] for row in rows[:2]} == {local("2026-10-12 07:00")}
    # After hours on a weekday: quiet hours end 06:30, the office opens 07:00.
    assert {row["not_before"] for row in rows[2:]} == {local("2026-10-07 07:00")}


async def test_degraded_longer_than_survives_a_restart_and_recovery_cancels(store: SqlStore) -> None:
    """DEGRADED > 15m alerts once, even across a router restart; recovering first cancels it."""
    clock = Clock(T0)
    router = make_router(load(), store, clock)
    await router.handle(
        TargetStateChanged(T0, "dvc", Health.UP, Health.DEGRADED, FailureReason.SLOW, "slow: 3.1s")
    )
    assert await router.tick(T0 + timedelta(minutes=10)) == 0
    restarted = make_router(load(), store, clock)
    await restarted.timers.load()
    assert len(restarted.timers) == 1
    assert await restarted.tick(T0 + timedelta(minutes=16)) == 1
    assert await restarted.tick(T0 + timedelta(minutes=30)) == 0
    rows = await outbox_rows(store)
    assert [row["key"] for row in rows] == [f"degraded:dvc:{round(T0.timestamp())}:it-em"]
    assert (
        rows[0]["text"] == "[TTHC] dvc hoạt động không ổn định hơn 15 phút (từ 10:00 06/10): phản hồi chậm."
    )

    later = T0 + timedelta(hours=2)
    await restarted.handle(
        TargetStateChanged(later, "dvc", Health.UP, Health.DEGRADED, FailureReason.SLOW, "")
    )
    await restarted.handle(
        TargetStateChanged(later + timedelta(minutes=5), "dvc", Health.DEGRADED, Health.UP, None)
    )
    assert await restarted.tick(later + timedelta(hours=1)) == 0
    assert len(await outbox_rows(store)) == 1


async def test_sync_failing_or_stale_longer_than_alerts_it_and_recovery_cancels(store: SqlStore) -> None:
    """A source without a success for 30 minutes alerts IT; its recovery cancels a pending timer."""
    router = make_router(load(), store, Clock(T0))
    last_ok = T0 - timedelta(minutes=10)
    await router.handle(DossierSyncFailed(T0, "opencps", "timeout", "read timeout", 2, last_ok))
    await router.handle(
        DossierSyncFailed(T0 + timedelta(minutes=5), "opencps", "http_502", "bad gateway", 3, last_ok)
    )
    assert await router.tick(T0 + timedelta(minutes=19)) == 0
    assert await router.tick(T0 + timedelta(minutes=21)) == 1
    rows = await outbox_rows(store)
    assert [row["key"] for row in rows] == [f"sync:opencps:{round(last_ok.timestamp())}:it-em"]
    assert rows[0]["text"] == (
        "[TTHC] Đồng bộ hồ sơ từ opencps lỗi từ 09:50 06/10 (3 lần): http_502. "
        "Cảnh báo hạn hồ sơ có thể bị thiếu."
    )
    await router.handle(DossierSyncFailed(T0 + timedelta(hours=1), "other", "timeout", "", 1, None))
    await router.handle(
        DossierSyncRecovered(T0 + timedelta(hours=1, minutes=5), "other", T0 + timedelta(hours=1))
    )
    assert await router.tick(T0 + timedelta(hours=3)) == 0


async def test_certificate_expiring_alerts_once_per_expiry_date(store: SqlStore) -> None:
    """A cert_expiring DEGRADED alerts IT once for that expiry date; a rule with fewer days waits."""
    section = alerts_yaml(
        rules=[
            {"name": "cert", "on": ["cert_expiring"], "to": ["it_oncall"], "days": 14},
            {"name": "cert-head", "on": ["cert_expiring"], "to": ["unit_head"], "days": 3},
        ]
    )
    router = make_router(load(section), store, Clock(T0))
    detail = "certificate expires in 5.5 days (< 14)"
    event = TargetStateChanged(T0, "dvc", Health.UP, Health.DEGRADED, FailureReason.CERT_EXPIRING, detail)
    assert await router.handle(event) == 1
    assert await router.handle(event) == 0
    rows = await outbox_rows(store)
    assert [row["key"] for row in rows] == ["cert:dvc:2026-10-11:it-em"]
    assert rows[0]["text"] == (
        "[TTHC] Chứng thư TLS của dvc hết hạn ngày 11/10/2026 (còn 5 ngày). Cần gia hạn trước ngày này."
    )
    # The 3-day rule fires when its window begins (expiry 2026-10-11 22:00 minus 3 days).
    assert await router.tick(local("2026-10-08 21:00")) == 0
    assert await router.tick(local("2026-10-08 22:01")) == 1
    assert (await outbox_rows(store))[-1]["key"] == "cert:dvc:2026-10-11:head-cuong"


async def test_target_down_repeats_while_the_incident_stays_open(store: SqlStore) -> None:
    """With `repeat: 1h`, each full hour of an open incident sends one reminder, until it closes."""
    section = alerts_yaml(
        rules=[{"name": "outage", "on": ["target_down"], "to": ["it_oncall"], "repeat": "1h"}]
    )
    router = make_router(load(section), store, Clock(T0))
    await router.handle(IncidentOpened(T0, 8, "dvc", FailureReason.REFUSED))
    # The first message, after group_wait.
    assert await router.tick(T0 + timedelta(minutes=30)) == 1
    assert await router.tick(T0 + timedelta(minutes=65)) == 1
    assert await router.tick(T0 + timedelta(minutes=70)) == 0
    assert await router.tick(T0 + timedelta(minutes=121)) == 1
    await router.handle(IncidentClosed(T0 + timedelta(minutes=130), 8, "dvc", T0, 130 * 60))
    assert await router.tick(T0 + timedelta(hours=5)) == 0
    rows = await outbox_rows(store)
    assert [row["key"] for row in rows] == [
        "incident:8:down:it-em",
        "incident:8:down:it-em:r1",
        "incident:8:down:it-em:r2",
    ]
    assert rows[1]["text"].endswith("Sự cố #8. Nhắc lại: đã 1 giờ 5 phút.")


async def test_digest_collects_crossings_into_one_morning_message(store: SqlStore) -> None:
    """Several due-soon crossings become one message per person the next working morning at 07:30."""
    section = alerts_yaml(
        rules=[{"name": "digest", "on": ["due_soon"], "to": ["assignee", "one_stop"], "digest": True}]
    )
    clock = Clock(T0)
    router = make_router(load(section), store, clock)
    codes = [f"000.00.12.H12-261005-000{n}" for n in (3, 1, 2)]
    for index, code in enumerate(codes):
        at = T0 + timedelta(hours=index)
        await router.handle(crossing(20 + index, at=at, code=code, due_at=T0 + timedelta(days=2 + index)))
    assert await outbox_rows(store) == []
    assert len(await router.digest.pending("officer-an")) == 3  # type: ignore[union-attr]
    digest = router.digest
    assert digest is not None
    assert await digest.tick(local("2026-10-06 16:00")) == 0  # collected after today's digest hour
    assert await digest.tick(local("2026-10-07 07:29")) == 0
    assert await digest.tick(local("2026-10-07 07:31")) == 2
    assert await digest.tick(local("2026-10-07 07:45")) == 0
    rows = await outbox_rows(store)
    assert [(row["key"], row["kind"], row["severity"]) for row in rows] == [
        ("digest:desk-binh:2026-10-07", "digest", "info"),
        ("digest:officer-an:2026-10-07", "digest", "info"),
    ]
    assert {row["not_before"] for row in rows} == {local("2026-10-07 07:31")}
    expected = (
        "[TTHC] 07/10: 3 hồ sơ sắp đến hạn: "
        "000.00.12.H12-261005-0003, 000.00.12.H12-261005-0001, 000.00.12.H12-261005-0002."
    )
    assert {row["text"] for row in rows} == {expected}
    assert await digest.pending() == []


async def test_digest_waits_for_a_working_day_and_limits_the_codes(store: SqlStore) -> None:
    """No digest on Saturday; Monday's lists the first N codes and how many more there are."""
    section = alerts_yaml(
        rules=[{"name": "digest", "on": ["due_soon"], "to": ["one_stop"], "digest": True}],
        digest={"at": "08:00", "max_codes": 2},
    )
    friday = local("2026-10-09 16:00")
    router = make_router(load(section), store, Clock(friday))
    for n in range(4):
        await router.handle(
            crossing(50 + n, at=friday, code=f"C-{n}", due_at=local(f"2026-10-1{3 + n} 10:00"))
        )
    digest = router.digest
    assert digest is not None
    assert await digest.tick(local("2026-10-10 09:00")) == 0
    assert await digest.tick(local("2026-10-12 08:00")) == 1
    rows = await outbox_rows(store)
    assert [row["text"] for row in rows] == ["[TTHC] 12/10: 4 hồ sơ sắp đến hạn: C-0, C-1 và 2 hồ sơ khác."]


async def test_deduplication_survives_a_restart(stores: StoreFactory, tmp_path: Path) -> None:
    """A new router on the same database handling the same events enqueues nothing new."""
    path = tmp_path / "restart.db"
    events: list[Event] = [
        crossing(1),
        crossing(2, threshold="4h", left=timedelta(hours=4), last=True),
        crossing(3, threshold="overdue", left=timedelta(0), outage=False),
        IncidentOpened(T0, 4, "dvc", FailureReason.DNS),
        IncidentClosed(T0 + timedelta(minutes=9), 4, "dvc", T0, 540),
    ]
    async with stores.new(path) as first:
        # The outage came back before its group_wait ended: only its recovered message is sent.
        assert await handle_all(make_router(load(), first, Clock(T0)), events) == 2 + 3 + 2 + 0 + 1
        before = await outbox_rows(first)
    async with stores.new(path) as second:
        again = make_router(load(), second, Clock(T0 + timedelta(hours=1)))
        await again.load()  # as the service does at start-up: timers and outage groups
        assert await handle_all(again, events) == 0
        assert await outbox_rows(second) == before


async def test_rederive_recreates_lost_alerts_of_recorded_incidents_and_crossings(store: SqlStore) -> None:
    """After a crash between recording and enqueuing, start-up re-derivation restores the alerts, once."""
    incident_id = await store.open_incident("dvc", T0 - timedelta(hours=1), "timeout", "")
    async with store.transaction() as conn:
        await conn.execute(
            "INSERT INTO dossiers (code, source, status, source_status, unit_code, unit_name, procedure_code,"
            " procedure_name, assignee_id, assignee_name, first_seen, last_seen) VALUES"
            " (?, 'opencps', 'open', 'processing', ?, 'Sở NN&MT', '1.004227', 'Cấp GCN QSDĐ', 'cb-0001',"
            " 'Nguyễn Văn An', 0, 0)",
            (CODE, UNIT),
        )
        await conn.execute(
            "INSERT INTO dossier_crossings (id, code, unit_code, threshold, due_at, crossed_at,"
            " working_seconds_left) VALUES (77, ?, ?, '4h', ?, ?, 14400)",
            (
                CODE,
                UNIT,
                round(local("2026-10-06 14:00").timestamp()),
                round((T0 - timedelta(hours=2)).timestamp()),
            ),
        )
    router = make_router(load(), store, Clock(T0))
    since = T0 - timedelta(days=2)
    assert await router.rederive(since, store, thresholds=["2d", "4h"]) == 1 + 3
    rows = await outbox_rows(store)
    assert sorted(row["key"] for row in rows) == sorted(
        [
            f"incident:{incident_id}:down:it-em",
            "crossing:77:officer-an",
            "crossing:77:desk-binh",
            "crossing:77:head-cuong",  # 4h is the last threshold: escalated
        ]
    )
    # The open incident is tracked again for repeats, and a second start-up adds nothing.
    assert await make_router(load(), store, Clock(T0)).rederive(since, store, thresholds=["2d", "4h"]) == 0


async def test_rederive_finds_a_crossing_first_seen_long_overdue(store: SqlStore) -> None:
    """A dossier first seen five days overdue is recorded with its old crossing instant; a crash before its
    alerts were stored is repaired at start-up although the instant is outside the re-derive window."""
    async with store.transaction() as conn:
        await conn.execute(
            "INSERT INTO dossiers (code, source, status, source_status, unit_code, unit_name, procedure_code,"
            " procedure_name, assignee_id, assignee_name, first_seen, last_seen) VALUES"
            " (?, 'opencps', 'open', 'processing', ?, 'Phòng TN&MT', '1.004227', 'Cấp GCN QSDĐ', 'cb-0001',"
            " 'Nguyễn Văn An', 0, 0)",
            (CODE, UNIT),
        )
        overdue_since = round((T0 - timedelta(days=5)).timestamp())
        await conn.execute(
            "INSERT INTO dossier_crossings (id, code, unit_code, threshold, due_at, crossed_at,"
            " working_seconds_left) VALUES (78, ?, ?, 'overdue', ?, ?, 0)",
            (CODE, UNIT, overdue_since, overdue_since),
        )
    since = T0 - timedelta(days=2)
    router = make_router(load(), store, Clock(T0))
    added = await router.rederive(since, store, thresholds=["2d", "4h"])
    keys = [row["key"] for row in await outbox_rows(store)]
    assert added == len(keys) > 0 and all(key.startswith("crossing:78:") for key in keys)
    assert await make_router(load(), store, Clock(T0)).rederive(since, store, thresholds=["2d", "4h"]) == 0


async def test_unreachable_people_are_counted_not_alerted(store: SqlStore) -> None:
    """A person whose preferred channels cannot reach them (no phone for SMS) gets nothing, and is counted."""
    section = alerts_yaml()
    section["directory"]["people"][5] = {"id": "it-em", "roles": ["it_oncall"], "channels": ["sms"]}
    router = make_router(load(section), store, Clock(T0))
    assert await router.handle(IncidentOpened(T0, 1, "dvc", None)) == 0
    assert router.unreachable == {"it-em": 1}


async def test_alert_service_routes_bus_events_to_a_fake_sms_gateway(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """End to end: an incident on the bus is stored, then delivered to the fake eSMS by the worker."""
    async with FakeEsms() as esms:
        section = alerts_yaml()
        to_fake_sms(section, esms)
        # At once (no grouping wait), so the test need not wait the default 30 s.
        section["rules"] = [
            {
                "name": "outage",
                "on": ["target_down", "target_recovered"],
                "to": ["it_oncall"],
                "group_wait": "0s",
            }
        ]
        async with stores.new(tmp_path / "service.db") as store:
            async with running_service(load(section), store) as (_service, bus):
                bus.publish(IncidentOpened(datetime.now(UTC), 11, "dvc", FailureReason.TIMEOUT))
                await wait_for_sms(esms, settle=0)
            assert len(esms.messages) == 1
            assert "dvc" in str(esms.messages[0])
            rows = await store.reader.execute_fetchall("SELECT dedupe_key, status FROM alert_outbox")
            assert [tuple(row) for row in rows] == [("incident:11:down:it-em", "sent")]
        assert bus.subscriptions == ()
