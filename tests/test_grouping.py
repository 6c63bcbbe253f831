"""Outage grouping on a real SQLite store and the real outbox: one message per person per outage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.router import Router
from alerts.templates import format_targets
from alerts.text import count_segments, unaccent
from monitor.config import ConfigError
from monitor.events import IncidentClosed, IncidentOpened
from monitor.model import FailureReason
from monitor.store import SqlStore
from tests.fakes.esms import FakeEsms
from tests.routing_helpers import (
    Clock,
    alerts_yaml,
    load,
    local,
    make_router,
    outbox_rows,
    running_service,
    to_fake_sms,
    wait_for_sms,
)
from tests.store_engines import StoreFactory

T0 = local("2026-10-06 10:00")
TARGETS = ("dichvucong", "motcua", "api-lienthong", "csdl", "cong-thanh-toan", "sms-gateway")


def two_on_call(**rule: Any) -> dict[str, Any]:
    """The routing section with a second IT on-call person and one outage rule (`rule` adds options)."""
    section = alerts_yaml(
        rules=[{"name": "outage", "on": ["target_down", "target_recovered"], "to": ["it_oncall"], **rule}]
    )
    section["directory"]["people"].append(
        {"id": "it-giang", "phone": "0966666666", "roles": ["it_oncall"], "channels": ["log"]}
    )
    return section


def keys_of_both(first: int, *messages: str) -> list[str]:
    """The outbox keys of group `first`'s `messages` (`down`, `down:g2`, `down:r1`, `up`) to both people."""
    keys = []
    for message in messages:
        kind, _, number = message.partition(":")
        for person in ("it-em", "it-giang"):
            keys.append(f"incident:{first}:{kind}:{person}" + (f":{number}" if number else ""))
    return keys


@pytest.fixture
async def store(stores: StoreFactory, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with stores.new(tmp_path / "grouping.db") as opened:
        yield opened


async def open_five(store: SqlStore) -> list[int]:
    """Five targets of one outage go down within 20 s; returns their incident ids (recorded in the store)."""
    ids = []
    for index, target in enumerate(TARGETS[:5]):
        ids.append(await store.open_incident(target, T0 + timedelta(seconds=5 * index), "timeout", ""))
    return ids


async def test_five_targets_down_within_group_wait_are_one_message_per_person(store: SqlStore) -> None:
    """Five incidents within 30 s: nothing before group_wait, then one message each naming all five."""
    router = make_router(load(two_on_call()), store, Clock(T0))
    ids = await open_five(store)
    for index, incident_id in enumerate(ids):
        at = T0 + timedelta(seconds=5 * index)
        assert (
            await router.handle(IncidentOpened(at, incident_id, TARGETS[index], FailureReason.TIMEOUT)) == 0
        )
    assert await router.tick(T0 + timedelta(seconds=29)) == 0
    assert await router.tick(T0 + timedelta(seconds=30)) == 2
    assert await router.tick(T0 + timedelta(minutes=10)) == 0
    rows = await outbox_rows(store)
    assert [(row["key"], row["kind"], row["severity"]) for row in rows] == [
        (f"incident:{ids[0]}:down:it-em", "target_down", "critical"),
        (f"incident:{ids[0]}:down:it-giang", "target_down", "critical"),
    ]
    assert rows[0]["text"] == (
        "[TTHC] 5 hệ thống NGỪNG HOẠT ĐỘNG từ 10:00 06/10: dichvucong, motcua, api-lienthong +2 khác "
        f"(quá thời gian chờ). Sự cố #{ids[0]}."
    )
    assert rows[1]["text"] == rows[0]["text"]
    # One SMS segment once unaccented.
    assert count_segments(unaccent(rows[0]["text"])) == 1


async def test_a_later_target_is_one_follow_up_and_recovery_is_one_message(store: SqlStore) -> None:
    """A 6th and 7th target later: one follow-up per group_interval; all back: one recovered message."""
    clock = Clock(T0)
    router = make_router(load(two_on_call(group_interval="5m")), store, clock)
    ids = await open_five(store)
    for index, incident_id in enumerate(ids):
        await router.handle(
            IncidentOpened(
                T0 + timedelta(seconds=5 * index), incident_id, TARGETS[index], FailureReason.TIMEOUT
            )
        )
    assert await router.tick(T0 + timedelta(seconds=30)) == 2
    sixth = T0 + timedelta(minutes=2)
    clock.now = sixth
    assert await router.handle(IncidentOpened(sixth, 106, TARGETS[5], FailureReason.REFUSED)) == 0
    clock.now = sixth + timedelta(minutes=1)
    assert await router.handle(IncidentOpened(clock.now, 107, "ho-tich", FailureReason.REFUSED)) == 0
    # The follow-up waits for group_interval after the first message (10:00:30 + 5 min).
    assert await router.tick(T0 + timedelta(minutes=5, seconds=29)) == 0
    assert await router.tick(T0 + timedelta(minutes=5, seconds=30)) == 2
    assert await router.tick(T0 + timedelta(minutes=20)) == 0
    back = T0 + timedelta(minutes=47)
    clock.now = back
    closing = [*zip(ids, TARGETS, strict=False), (106, TARGETS[5]), (107, "ho-tich")]
    added = 0
    for incident_id, target in closing:
        added += await router.handle(IncidentClosed(back, incident_id, target, T0, 47 * 60))
    assert added == 2
    rows = await outbox_rows(store)
    assert [row["key"] for row in rows] == keys_of_both(ids[0], "down", "down:g2", "up")
    assert rows[2]["text"] == (
        "[TTHC] Thêm 2 hệ thống ngừng hoạt động từ 10:02 06/10: sms-gateway, ho-tich (từ chối kết nối). "
        f"Cùng sự cố #{ids[0]}, tổng 7 hệ thống."
    )
    assert rows[4]["text"] == (
        "[TTHC] 7 hệ thống đã hoạt động lại lúc 10:47 06/10: dichvucong, motcua, api-lienthong +4 khác, "
        f"gián đoạn 47 phút. Sự cố #{ids[0]}."
    )
    # A new outage after the recovery is a new group with its own first message.
    clock.now = T0 + timedelta(hours=2)
    await router.handle(IncidentOpened(clock.now, 200, "dichvucong", FailureReason.TIMEOUT))
    assert await router.tick(clock.now + timedelta(seconds=30)) == 2
    assert (await outbox_rows(store))[-1]["key"] == "incident:200:down:it-giang"


async def test_a_restart_during_group_wait_sends_the_groups_message_exactly_once(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """The pending group survives a restart: a new router on the same store sends it once, not twice."""
    path = tmp_path / "restart.db"
    async with stores.new(path) as first:
        router = make_router(load(two_on_call()), first, Clock(T0 + timedelta(seconds=20)))
        await router.load()
        ids = await open_five(first)
        for index, incident_id in enumerate(ids):
            at = T0 + timedelta(seconds=5 * index)
            await router.handle(IncidentOpened(at, incident_id, TARGETS[index], FailureReason.TIMEOUT))
        assert await outbox_rows(first) == []
    # Restarted 10 s later, still inside group_wait: start-up re-derivation sees the five incidents.
    async with stores.new(path) as second:
        clock = Clock(T0 + timedelta(seconds=25))
        again = make_router(load(two_on_call()), second, clock)
        await again.load()
        assert len(again.groups) == 2
        assert await again.rederive(T0 - timedelta(days=2), second) == 0
        assert await again.tick(T0 + timedelta(seconds=30)) == 2
        assert await again.rederive(T0 - timedelta(days=2), second) == 0
        assert await again.tick(T0 + timedelta(minutes=30)) == 0
        rows = await outbox_rows(second)
    assert [row["key"] for row in rows] == [
        f"incident:{ids[0]}:down:it-em",
        f"incident:{ids[0]}:down:it-giang",
    ]
    assert all(row["text"].startswith("[TTHC] 5 hệ thống NGỪNG HOẠT ĐỘNG") for row in rows)


async def tick_losing_group_writes(router: Router, store: SqlStore, now: datetime) -> int:
    """`router.tick(now)`, then the groups' rows put back as they were before it: a crash lost the writes
    that follow the stored messages. Returns how many alerts the tick stored."""
    before = await store.reader.execute_fetchall("SELECT key, fire_at, data FROM alert_timers")
    added = await router.tick(now)
    async with store.transaction() as conn:
        await conn.executemany(
            "UPDATE alert_timers SET fire_at = ?, data = ? WHERE key = ?",
            [(row[1], row[2], row[0]) for row in before],
        )
    return added


async def test_a_crash_between_the_message_and_the_groups_state_sends_it_once(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """The message is stored but the group's row still says "pending": the next flush adds nothing new."""
    path = tmp_path / "crash.db"
    async with stores.new(path) as first:
        router = make_router(load(two_on_call()), first, Clock(T0))
        ids = await open_five(first)
        for index, incident_id in enumerate(ids):
            await router.handle(IncidentOpened(T0, incident_id, TARGETS[index], FailureReason.TIMEOUT))
        assert await tick_losing_group_writes(router, first, T0 + timedelta(seconds=30)) == 2
    async with stores.new(path) as second:
        again = make_router(load(two_on_call()), second, Clock(T0 + timedelta(minutes=1)))
        await again.load()
        assert await again.tick(T0 + timedelta(minutes=1)) == 0
        assert len(await outbox_rows(second)) == 2


async def test_a_single_target_outage_reads_as_before(store: SqlStore) -> None:
    """One target: the one-target texts and keys; `group_wait: 0s` sends at once as before grouping."""
    router = make_router(load(two_on_call(group_wait="0s")), store, Clock(T0))
    assert await router.handle(IncidentOpened(T0, 3, "dvc", FailureReason.TIMEOUT, "timeout after 10s")) == 2
    back = T0 + timedelta(minutes=47)
    assert await router.handle(IncidentClosed(back, 3, "dvc", T0, 47 * 60)) == 2
    rows = await outbox_rows(store)
    assert [row["key"] for row in rows] == [
        "incident:3:down:it-em",
        "incident:3:down:it-giang",
        "incident:3:up:it-em",
        "incident:3:up:it-giang",
    ]
    assert rows[0]["text"] == "[TTHC] dvc NGỪNG HOẠT ĐỘNG từ 10:00 06/10: quá thời gian chờ. Sự cố #3."
    assert rows[2]["text"] == "[TTHC] dvc đã hoạt động lại lúc 10:47 06/10, gián đoạn 47 phút. Sự cố #3."


async def test_an_outage_back_within_group_wait_sends_only_its_recovery(store: SqlStore) -> None:
    """Down and back within group_wait: no down message, one recovered message saying how long it lasted."""
    router = make_router(load(two_on_call()), store, Clock(T0))
    await router.handle(IncidentOpened(T0, 5, "dvc", FailureReason.TIMEOUT))
    back = T0 + timedelta(seconds=20)
    assert await router.handle(IncidentClosed(back, 5, "dvc", T0, 20)) == 2
    assert await router.tick(T0 + timedelta(minutes=5)) == 0
    rows = await outbox_rows(store)
    assert [row["key"] for row in rows] == ["incident:5:up:it-em", "incident:5:up:it-giang"]


async def test_groups_are_forgotten_after_the_rederive_window(store: SqlStore) -> None:
    """A finished group's row stays while re-derivation could see its incidents, then goes."""
    router = make_router(load(two_on_call()), store, Clock(T0))
    await router.handle(IncidentOpened(T0, 5, "dvc", FailureReason.TIMEOUT))
    await router.handle(IncidentClosed(T0 + timedelta(minutes=1), 5, "dvc", T0, 60))
    assert len(router.groups) == 2
    await router.tick(T0 + timedelta(days=1))
    assert len(router.groups) == 2
    await router.tick(T0 + timedelta(days=2, minutes=2))
    assert len(router.groups) == 0
    assert await store.reader.execute_fetchall("SELECT key FROM alert_timers") == []


def test_grouping_options_are_checked_at_their_yaml_path() -> None:
    """group_wait on a rule without outages, or longer than an hour, names the rule in the error."""
    section = alerts_yaml(rules=[{"name": "late", "on": ["overdue"], "to": ["leader"], "group_wait": "10s"}])
    with pytest.raises(ConfigError, match=r"alerts\.rules\[0\]: group_wait only applies to target_down"):
        load(section)
    with pytest.raises(ConfigError, match=r"alerts\.rules\[0\]: group_wait must be at most 1h"):
        load(two_on_call(group_wait="2h"))
    custom = two_on_call()
    custom["templates"] = {"target_down_group": "[TTHC] {count} hệ thống lỗi: {nope}"}
    with pytest.raises(ConfigError, match=r"alerts\.templates\.target_down_group.*unknown field \{nope\}"):
        load(custom)


def test_target_lists_name_the_first_three_and_count_the_rest() -> None:
    """`a, b, c +2 khác`: SMS stays short however many targets are down."""
    assert format_targets(["a"]) == "a"
    assert format_targets(["a", "b", "c"]) == "a, b, c"
    assert format_targets(["a", "b", "c", "d", "e"]) == "a, b, c +2 khác"


async def three_down_through_the_service(
    stores: StoreFactory, tmp_path: Path, esms: FakeEsms, sms: int, **rule: Any
) -> timedelta:
    """Three targets down at once, through a running AlertService (one person, SMS to `esms`, the outage
    rule with `rule`'s options) until `sms` messages arrived (6 s at most); returns how long that took."""
    section = to_fake_sms(two_on_call(**rule), esms)
    section["directory"]["people"].pop()
    async with (
        stores.new(tmp_path / "service.db") as store,
        running_service(load(section), store) as (_service, bus),
    ):
        now = datetime.now(UTC)
        for index, target in enumerate(TARGETS[:3]):
            bus.publish(IncidentOpened(now, 10 + index, target, FailureReason.TIMEOUT))
        for _ in range(300):
            if len(esms.messages) >= sms:
                break
            await asyncio.sleep(0.02)
        waited = datetime.now(UTC) - now
        # Long enough for a message sent too many to arrive.
        await asyncio.sleep(0.3)
    return waited


async def test_the_alert_service_sends_a_group_at_its_group_wait_not_a_tick_later(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """With a 30 s tick, a 1 s group_wait still goes out about a second after the outage, as one SMS."""
    async with FakeEsms() as esms:
        assert await three_down_through_the_service(stores, tmp_path, esms, 1, group_wait="1s") < timedelta(
            seconds=5
        )
        assert len(esms.messages) == 1
        assert "3 he thong" in str(esms.messages[0]).lower()


async def test_an_alert_service_restarted_during_group_wait_sends_the_group_once(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Stopped 0.3 s into a 1.5 s group_wait and started again on the same store: one SMS per outage."""
    async with FakeEsms() as esms:
        section = to_fake_sms(two_on_call(group_wait="1.5s"), esms)
        section["directory"]["people"].pop()
        config = load(section)
        path = tmp_path / "restart.db"
        now = datetime.now(UTC)
        async with stores.new(path) as store, running_service(config, store) as (_first, bus):
            for target in TARGETS[:4]:
                incident_id = await store.open_incident(target, now, "timeout", "")
                bus.publish(IncidentOpened(now, incident_id, target, FailureReason.TIMEOUT))
            await asyncio.sleep(0.3)
        assert esms.messages == []
        async with stores.new(path) as store, running_service(config, store):
            await wait_for_sms(esms, settle=0.5)
        assert len(esms.messages) == 1
        assert "4 he thong" in str(esms.messages[0]).lower()


async def test_the_first_start_after_the_upgrade_does_not_name_incidents_already_told(
    store: SqlStore,
) -> None:
    """Incidents alerted one message each before grouping are not named again in a follow-up."""
    first = await store.open_incident("dvc", T0, "timeout", "")
    second = await store.open_incident("motcua", T0 + timedelta(seconds=40), "timeout", "")
    old = make_router(load(alerts_yaml()), store, Clock(T0))
    # What the router stored before outages were grouped: one down message per incident.
    for incident_id, target in ((first, "dvc"), (second, "motcua")):
        alerts, _items = old.build(old.occurrences.target_down(incident_id, target, T0, "timeout", ""))
        assert await old.sink.enqueue(alerts) == 1
    router = make_router(load(alerts_yaml()), store, Clock(T0 + timedelta(minutes=2)))
    await router.load()
    assert await router.rederive(T0 - timedelta(days=2), store) == 0
    assert await router.tick(T0 + timedelta(minutes=30)) == 0
    back = T0 + timedelta(minutes=40)
    await router.handle(IncidentClosed(back, first, "dvc", T0, 2400))
    assert await router.handle(IncidentClosed(back, second, "motcua", T0, 2400)) == 1
    rows = await outbox_rows(store)
    assert [row["key"] for row in rows] == [
        f"incident:{first}:down:it-em",
        f"incident:{second}:down:it-em",
        f"incident:{first}:up:it-em",
    ]
    assert rows[2]["text"].startswith("[TTHC] 2 hệ thống đã hoạt động lại lúc 10:40 06/10: dvc, motcua")


async def open_five_routed(router: Router, store: SqlStore) -> list[int]:
    """`open_five`, each incident also handled by `router`; returns the incident ids."""
    ids = await open_five(store)
    for index, incident_id in enumerate(ids):
        at = T0 + timedelta(seconds=5 * index)
        await router.handle(IncidentOpened(at, incident_id, TARGETS[index], FailureReason.TIMEOUT))
    return ids


async def test_a_group_reminds_once_per_repeat_naming_the_targets_still_down(store: SqlStore) -> None:
    """`repeat: 30m`, five down: one reminder per person per 30 min naming those still down, not five."""
    clock = Clock(T0)
    router = make_router(load(two_on_call(repeat="30m")), store, clock)
    ids = await open_five_routed(router, store)
    assert await router.tick(T0 + timedelta(seconds=30)) == 2
    # Counted from the first target's start; the alert service sleeps until then.
    assert router.groups.next_fire() == T0 + timedelta(minutes=30)
    assert await router.tick(T0 + timedelta(minutes=29)) == 0
    assert await router.tick(T0 + timedelta(minutes=30)) == 2
    assert await router.tick(T0 + timedelta(minutes=45)) == 0
    clock.now = T0 + timedelta(minutes=50)
    assert await router.handle(IncidentClosed(clock.now, ids[0], TARGETS[0], T0, 50 * 60)) == 0
    assert await router.tick(T0 + timedelta(minutes=60)) == 2
    clock.now = T0 + timedelta(minutes=70)
    for incident_id, target in zip(ids[1:4], TARGETS[1:4], strict=True):
        assert await router.handle(IncidentClosed(clock.now, incident_id, target, T0, 70 * 60)) == 0
    assert await router.tick(T0 + timedelta(minutes=90)) == 2
    clock.now = T0 + timedelta(minutes=100)
    assert await router.handle(IncidentClosed(clock.now, ids[4], TARGETS[4], T0, 100 * 60)) == 2
    assert await router.tick(T0 + timedelta(hours=3)) == 0
    assert router.groups.next_fire() is None
    rows = await outbox_rows(store)
    first = ids[0]
    assert [row["key"] for row in rows] == keys_of_both(first, "down", "down:r1", "down:r2", "down:r3", "up")
    assert rows[2]["text"] == (
        "[TTHC] Nhắc lại: 5 hệ thống vẫn ngừng hoạt động từ 10:00 06/10 (30 phút): "
        f"dichvucong, motcua, api-lienthong +2 khác (quá thời gian chờ). Sự cố #{first}."
    )
    assert rows[3]["text"] == rows[2]["text"]
    assert count_segments(unaccent(rows[2]["text"])) == 1
    # dichvucong is back: the next reminder names the other four.
    assert rows[4]["text"] == (
        "[TTHC] Nhắc lại: 4 hệ thống vẫn ngừng hoạt động từ 10:00 06/10 (1 giờ): "
        f"motcua, api-lienthong, csdl +1 khác (quá thời gian chờ). Sự cố #{first}."
    )
    # One left: the one-target reminder text, about that target's own incident.
    assert rows[6]["text"] == (
        f"[TTHC] cong-thanh-toan NGỪNG HOẠT ĐỘNG từ 10:00 06/10: quá thời gian chờ. Sự cố #{ids[4]}. "
        "Nhắc lại: đã 1 giờ 30 phút."
    )


async def test_a_restart_between_reminders_neither_repeats_nor_skips_one(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """The group row keeps the last reminder: after a restart (or a crash before that write) no reminder
    is sent twice, and one missed while stopped goes out at start-up."""
    path = tmp_path / "reminders.db"
    config = load(two_on_call(repeat="30m"))
    async with stores.new(path) as first:
        router = make_router(config, first, Clock(T0))
        await router.load()
        ids = await open_five_routed(router, first)
        assert await router.tick(T0 + timedelta(seconds=30)) == 2
        assert await tick_losing_group_writes(router, first, T0 + timedelta(minutes=30)) == 2
    async with stores.new(path) as second:
        again = make_router(config, second, Clock(T0 + timedelta(minutes=31)))
        await again.load()
        assert await again.rederive(T0 - timedelta(days=2), second) == 0
        assert await again.tick(T0 + timedelta(minutes=31)) == 0
        assert again.groups.next_fire() == T0 + timedelta(minutes=60)
        assert await again.tick(T0 + timedelta(minutes=59)) == 0
    # Stopped from 10:59 to 11:35: the reminder due at 11:00 goes out once, at start-up.
    async with stores.new(path) as third:
        later = make_router(config, third, Clock(T0 + timedelta(minutes=95)))
        await later.load()
        # Re-derivation flushes the groups it hands their incidents to: the overdue reminder goes then.
        assert await later.rederive(T0 - timedelta(days=2), third) == 2
        assert await later.tick(T0 + timedelta(minutes=95)) == 0
        assert await later.tick(T0 + timedelta(minutes=119)) == 0
        assert later.groups.next_fire() == T0 + timedelta(minutes=120)
        rows = await outbox_rows(third)
    assert [row["key"] for row in rows] == keys_of_both(ids[0], "down", "down:r1", "down:r3")
    assert rows[4]["text"].startswith(
        "[TTHC] Nhắc lại: 5 hệ thống vẫn ngừng hoạt động từ 10:00 06/10 (1 giờ 35 phút)"
    )


async def test_the_alert_service_wakes_for_a_groups_reminder(stores: StoreFactory, tmp_path: Path) -> None:
    """With a 30 s tick, a 2 s `repeat` still reminds about two seconds after the outage began."""
    async with FakeEsms() as esms:
        waited = await three_down_through_the_service(
            stores, tmp_path, esms, 2, group_wait="0.5s", repeat="2s"
        )
        assert waited < timedelta(seconds=5)
        assert len(esms.messages) == 2
        assert "nhac lai: 3 he thong" in str(esms.messages[1]).lower()


async def test_groups_stored_before_reminders_were_grouped_remind_after_the_upgrade(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """A group row without the reminder fields (written by the previous version) takes its rule's repeat."""
    path = tmp_path / "upgrade.db"
    config = load(two_on_call(repeat="30m"))
    async with stores.new(path) as first:
        router = make_router(config, first, Clock(T0))
        ids = await open_five_routed(router, first)
        assert await router.tick(T0 + timedelta(seconds=30)) == 2
        rows = await first.reader.execute_fetchall("SELECT key, data FROM alert_timers")
        # As the previous version stored them: the message time as fire_at, no repeat or reminders.
        legacy = []
        for key, data in rows:
            fields = json.loads(data)
            fire_at = fields.pop("message_at")
            del fields["repeat"], fields["reminders"]
            legacy.append((fire_at, json.dumps(fields), key))
        async with first.transaction() as conn:
            await conn.executemany("UPDATE alert_timers SET fire_at = ?, data = ? WHERE key = ?", legacy)
    async with stores.new(path) as second:
        again = make_router(config, second, Clock(T0 + timedelta(minutes=20)))
        await again.load()
        assert await again.rederive(T0 - timedelta(days=2), second) == 0
        assert again.groups.next_fire() == T0 + timedelta(minutes=30)
        assert await again.tick(T0 + timedelta(minutes=30)) == 2
        rows = await outbox_rows(second)
    assert [row["key"] for row in rows] == keys_of_both(ids[0], "down", "down:r1")
