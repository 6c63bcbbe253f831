"""Live reload end to end: the real daemon in-process on a store of each engine, the simulator as dossier
source, a loopback target to break, and the fake eSMS gateway as the alert channel."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from alerts.model import AlertKind, NewAlert, Severity
from alerts.outbox import Outbox
from alerts.service import REMOVED_PERSON
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.simulator import DEFAULT_PASSWORD, Simulator
from tests.crash_helpers import DaemonProcess, SlowEsms
from tests.fakes.esms import FakeEsms
from tests.outage_helpers import Portal
from tests.store_engines import StoreFactory

TOKEN = "reload-api-token-81c3"
EM_PHONE = "0977777777"
GIANG_PHONE = "0966666666"


def person(person_id: str, phone: str) -> dict[str, Any]:
    return {"id": person_id, "phone": phone, "roles": ["it_oncall"], "channels": ["sms"]}


def base_config(
    tmp_path: Path, sim: Simulator, esms: FakeEsms, switch: Portal, stores: StoreFactory
) -> dict[str, Any]:
    """One target, one OpenCPS source on the simulator, one SMS channel, IT on-call told at once; the store
    on the engine of `stores`."""
    return {
        "listen": "127.0.0.1:0",
        "api": {"token": TOKEN},
        "logging": {"format": "json"},
        "store": {**stores.config(tmp_path / "monitor.db"), "flush_interval": "0.05s"},
        "scheduler": {"start_jitter": 0, "shutdown_grace": "2s"},
        "targets": [
            {
                "name": "portal",
                "type": "http",
                "url": switch.url,
                "interval": "0.2s",
                "timeout": "0.2s",
                "failure_threshold": 1,
                "success_threshold": 1,
            }
        ],
        "dossiers": {
            "sources": [
                {
                    "name": "motcua",
                    "type": "opencps",
                    "base_url": sim.api_base,
                    "group_id": sim.group_id,
                    "username": sim.username,
                    "password": DEFAULT_PASSWORD,
                    "interval": "1h",
                    "full_interval": "1h",
                    "attempts": 1,
                    "timeout": "5s",
                }
            ],
            "thresholds": ["2d", "4h"],
        },
        "alerts": {
            "channels": [esms.channel_settings(timeout="5s")],
            "directory": {"people": [person("it-em", EM_PHONE)]},
            "rules": [
                {
                    "name": "outage",
                    "on": ["target_down", "target_recovered"],
                    "to": ["it_oncall"],
                    "group_wait": "0s",
                }
            ],
            "quiet_hours": None,
            "tick_interval": "0.2s",
            "delivery": {"poll_interval": "0.1s", "shutdown_grace": "5s"},
        },
    }


@dataclass
class Office:
    """The running daemon and everything around it; `write()` changes the config file."""

    daemon: Daemon
    path: Path
    config: dict[str, Any]
    sim: Simulator
    esms: FakeEsms
    switch: Portal

    def write(self, config: dict[str, Any]) -> None:
        self.config = config
        write_yaml(self.path, config)

    def edited(self) -> dict[str, Any]:
        return copy.deepcopy(self.config)

    async def post_reload(self, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.daemon.base_url}/api/v1/reload", headers=headers) as response,
        ):
            return response.status, await response.json()

    def phones(self) -> list[str]:
        return [str(message["phone"]) for message in self.esms.messages]

    async def outage(self, people: int = 1) -> None:
        """The portal goes down and comes back (one incident): wait for each person's two messages."""
        before = len(self.esms.messages)
        self.switch.status = 503
        await wait_for(lambda: self._messages_since(before, "NGUNG", people))
        self.switch.status = 200
        await wait_for(lambda: self._messages_since(before, "hoat dong lai", people))

    async def _messages_since(self, before: int, word: str, count: int) -> bool:
        return sum(word in str(message["content"]) for message in self.esms.messages[before:]) >= count


def write_yaml(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")


async def wait_for(predicate: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def start_office(tmp_path: Path, esms: FakeEsms, stores: StoreFactory) -> AsyncIterator[Office]:
    """The simulator, the target, the config file and the daemon on it; all stopped afterwards."""
    sim = Simulator(seed=5, dossier_count=120, tls=False, tick_interval=3600)
    await sim.start()
    switch = Portal()
    await switch.start()
    path = tmp_path / "monitor.yaml"
    office = Office(None, path, {}, sim, esms, switch)  # type: ignore[arg-type]
    office.write(base_config(tmp_path, sim, esms, switch, stores))
    daemon = Daemon(load_config(path), config_path=path)
    office.daemon = daemon
    await daemon.start()
    try:
        yield office
    finally:
        await daemon.stop()
        await switch.stop()
        await sim.stop()


@pytest.fixture
async def office(tmp_path: Path, stores: StoreFactory) -> AsyncIterator[Office]:
    async with FakeEsms() as esms, start_office(tmp_path, esms, stores) as running:
        yield running


async def test_a_person_added_and_sighup_gets_the_next_alert(office: Office) -> None:
    """An officer joins IT on-call; after SIGHUP the next outage reaches them too."""
    await office.outage()
    assert set(office.phones()) == {"84977777777"}
    config = office.edited()
    config["alerts"]["directory"]["people"].append(person("it-giang", GIANG_PHONE))
    office.write(config)
    # The daemon's own signal handling, as `tthc-monitor run` installs it.
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(office.daemon.reload()))
    try:
        os.kill(os.getpid(), signal.SIGHUP)

        async def reloaded() -> bool:
            return office.daemon.alerts.directory.person("it-giang") is not None

        await wait_for(reloaded)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
    before = len(office.esms.messages)
    await office.outage(people=2)
    assert sorted(office.phones()[before:]) == ["84966666666", "84966666666", "84977777777", "84977777777"]


async def test_a_person_removed_gets_nothing_new_and_their_pending_alerts_are_not_sent(
    office: Office,
) -> None:
    """Removing an officer cancels their pending alerts with a clear reason and stops new ones; a changed
    phone number re-addresses pending alerts."""
    config = office.edited()
    config["alerts"]["directory"]["people"].append(person("it-giang", GIANG_PHONE))
    office.write(config)
    status, body = await office.post_reload()
    assert status == 200 and body["changed"] == ["alerts"]
    outbox = office.daemon.alerts.outbox
    assert outbox is not None
    # An alert held for later (as quiet hours hold one) for each of the two.
    later = datetime.now(UTC) + timedelta(hours=2)
    held = [
        NewAlert(
            dedupe_key=f"test:held:{who}",
            kind=AlertKind.CERT_EXPIRING,
            severity=Severity.INFO,
            person_id=who,
            channels=("sms",),
            text="[TTHC] Chứng thư TLS của portal sắp hết hạn.",
            event_at=later,
            not_before=later,
            phone=phone,
        )
        for who, phone in (("it-em", "84977777777"), ("it-giang", "84966666666"))
    ]
    assert await outbox.enqueue(held) == 2
    config["alerts"]["directory"]["people"].pop()
    office.write(config)
    status, body = await office.post_reload()
    assert status == 200 and body["details"]["people_removed"] == ["it-giang"]
    giang = await outbox.get_by_key("test:held:it-giang")
    em = await outbox.get_by_key("test:held:it-em")
    assert giang is not None and giang.status == "failed" and giang.last_error == REMOVED_PERSON
    assert em is not None and em.status == "pending"
    # it-em's new phone number reaches the alert still waiting for them.
    config["alerts"]["directory"]["people"][0]["phone"] = "0911222333"
    office.write(config)
    assert (await office.post_reload())[0] == 200
    em = await outbox.get_by_key("test:held:it-em")
    assert em is not None and em.phone == "84911222333" and em.status == "pending"
    before = len(office.esms.messages)
    await office.outage()
    assert set(office.phones()[before:]) == {"84911222333"}
    # Not even stored: the router no longer knows the person.
    rows = await office.daemon.store.reader.execute_fetchall(
        "SELECT dedupe_key FROM alert_outbox WHERE person_id = 'it-giang'"
    )
    assert [row[0] for row in rows] == ["test:held:it-giang"]


async def test_a_holiday_on_a_dossiers_due_day_moves_its_pending_crossing(office: Office) -> None:
    """Declaring the due day a day off re-plans the dossier's thresholds; recorded crossings stay."""
    service = office.daemon.dossiers
    engine = service.engine

    async def synced() -> bool:
        return service.sync.stats["motcua"].last_success_started is not None

    await wait_for(synced)
    now = datetime.now(UTC)
    zone = office.daemon.config.zone
    tracked = [t.dossier for t in service.dossier_store.tracked.values() if not t.vanished]
    planned = []
    for dossier in tracked:
        timeline = engine.timeline(dossier)
        due = engine.due_at(dossier)
        if timeline is None or due is None or due - now < timedelta(days=3):
            continue
        local = due.astimezone(zone)
        if engine.calendar_for(dossier.unit_code, dossier.procedure_code).is_working_day(local.date()):
            planned.append((dossier, due, dict(timeline.crossings)))
    assert planned, "the simulator has open dossiers due on a working day at least 3 days ahead"
    dossier, due, before = planned[0]
    recorded_before = await office.daemon.store.reader.execute_fetchall(
        "SELECT count(*) FROM dossier_crossings"
    )
    config = office.edited()
    day = due.astimezone(zone).date().isoformat()
    config["calendars"] = {"calendars": {"default": {"days_off": [{"date": day, "name": "Nghỉ bù"}]}}}
    office.write(config)
    status, body = await office.post_reload()
    assert status == 200 and body["changed"] == ["calendars"], body
    assert body["details"]["deadlines_replanned"] is True
    timeline = engine.timeline(dossier)
    assert timeline is not None
    after = dict(timeline.crossings)
    # Four working hours before a deadline on a day off begin the working day before.
    assert after["4h"] < before["4h"]
    assert after["4h"] <= datetime.fromisoformat(day).replace(tzinfo=zone).timestamp()
    recorded_after = await office.daemon.store.reader.execute_fetchall(
        "SELECT count(*) FROM dossier_crossings"
    )
    assert recorded_after[0][0] >= recorded_before[0][0]
    # The alert side reads the same calendars object.
    assert not office.daemon.alerts.calendars.default.is_working_day(due.astimezone(zone).date())


async def test_a_changed_source_password_restarts_only_that_source(office: Office) -> None:
    """The office changes the API password: sync fails, the reloaded password makes it work again."""
    sync = office.daemon.dossiers.sync
    stats = sync.stats["motcua"]

    async def succeeded_after(moment: datetime) -> bool:
        return stats.last_success_started is not None and stats.last_success_started >= moment

    await wait_for(lambda: succeeded_after(datetime.min.replace(tzinfo=UTC)))
    office.sim.change_password("mat-khau-moi-2026")
    outcome = await sync.sync_once("motcua", full=True)
    assert not outcome.ok
    # An alerts-only reload leaves the source's task running.
    task = next(task for task in sync._tasks if task.get_name() == "dossier-sync-motcua")
    config = office.edited()
    config["alerts"]["tick_interval"] = "0.3s"
    office.write(config)
    status, body = await office.post_reload()
    assert status == 200 and body["details"]["sources_restarted"] == []
    assert task in sync._tasks and not task.done()
    config["dossiers"]["sources"][0]["password"] = "mat-khau-moi-2026"
    office.write(config)
    moment = datetime.now(UTC)
    status, body = await office.post_reload()
    assert status == 200 and body["changed"] == ["dossiers"]
    assert body["details"]["sources_restarted"] == ["motcua"]
    assert task.done()
    await wait_for(lambda: succeeded_after(moment))
    assert "mat-khau-moi-2026" not in str(body)


async def test_a_bad_config_changes_nothing_and_says_why(office: Office) -> None:
    """An invalid file: 422 with errors at their YAML paths, gauge 0, old people, targets and sources."""
    config = office.edited()
    config["alerts"]["directory"]["people"].append(person("it-giang", GIANG_PHONE))
    config["alerts"]["rules"][0]["channels"] = ["zalo"]
    config["targets"].append({"name": "api", "type": "tcp", "host": "127.0.0.1", "port": 1})
    office.write(config)
    status, _body = await office.post_reload(token=None)
    assert status == 401
    status, body = await office.post_reload()
    assert status == 422 and body["reloaded"] is False
    assert body["errors"] == ["alerts.rules[0].channels[0]: unknown channel 'zalo'"]
    daemon = office.daemon
    assert daemon.metrics.config_reload_successful._value.get() == 0
    assert daemon.alerts.directory.person("it-giang") is None
    assert set(daemon.scheduler.targets) == {"portal"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{daemon.base_url}/metrics") as response,
    ):
        assert "tthc_config_last_reload_successful 0.0" in await response.text()
    # Fixed: applied, gauge back to 1; a restart-only change is reported, not applied.
    del config["alerts"]["rules"][0]["channels"]
    config["store"]["flush_interval"] = "0.5s"
    office.write(config)
    status, body = await office.post_reload()
    assert status == 200 and body["changed"] == ["targets", "alerts"]
    assert body["restart_needed"] == ["store"]
    assert daemon.config.store.flush_interval == timedelta(seconds=0.05)
    assert daemon.metrics.config_reload_successful._value.get() == 1
    assert set(daemon.scheduler.targets) == {"portal", "api"}


async def test_an_alert_in_flight_during_a_channel_reload_is_delivered_once(
    tmp_path: Path, stores: StoreFactory
) -> None:
    """A send in progress finishes on the old channel; the rebuilt channel does not send it again."""
    async with SlowEsms(delay=1.0) as esms, start_office(tmp_path, esms, stores) as office:
        outbox = office.daemon.alerts.outbox
        assert outbox is not None
        office.switch.status = 503
        await wait_for(lambda: has_counts(outbox, in_flight=1))
        config = office.edited()
        config["alerts"]["channels"][0]["timeout"] = "8s"
        office.write(config)
        status, body = await office.post_reload()
        assert status == 200 and body["details"]["channels_rebuilt"] == ["sms"]
        office.switch.status = 200
        await wait_for(lambda: has_counts(outbox, sent=2), within=15)
        assert len(esms.messages) == 2
        worker = office.daemon.alerts.worker
        assert worker is not None
        assert worker.channels["sms"].config.timeout == timedelta(seconds=8)  # type: ignore[attr-defined]


async def has_counts(outbox: Outbox, **wanted: int) -> bool:
    """Whether the outbox holds exactly these numbers of rows per status (the others zero)."""
    counts = {status.value: count for status, count in (await outbox.counts()).items()}
    return all(counts[status] == wanted.get(status, 0) for status in counts)


async def test_sighup_to_tthc_monitor_run_applies_the_file(tmp_path: Path, stores: StoreFactory) -> None:
    """The real command: SIGHUP after adding a person and a holiday reloads both, and says what changed."""
    async with FakeEsms() as esms:
        sim = Simulator(seed=5, dossier_count=20, tls=False, tick_interval=3600)
        await sim.start()
        switch = Portal()
        await switch.start()
        daemon = DaemonProcess(tmp_path / "monitor.yaml", tmp_path / "daemon.log")
        try:
            config = base_config(tmp_path, sim, esms, switch, stores)
            write_yaml(daemon.config, config)
            base_url = await daemon.start()
            config["alerts"]["directory"]["people"].append(person("it-giang", GIANG_PHONE))
            config["calendars"] = {"calendars": {"default": {"days_off": [{"date": "2026-12-31"}]}}}
            write_yaml(daemon.config, config)
            daemon.send_signal(signal.SIGHUP)

            async def reloaded() -> bool:
                return any(event.get("event") == "config_reloaded" for event in daemon.log_events())

            await wait_for(reloaded, within=15)
            event = next(event for event in daemon.log_events() if event.get("event") == "config_reloaded")
            assert event["changed"] == ["calendars", "alerts"]
            assert event["deadlines_replanned"] is True
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{base_url}/metrics") as response,
            ):
                assert "tthc_config_last_reload_successful 1.0" in await response.text()
            daemon.send_signal(signal.SIGTERM)
            assert await daemon.wait(15) == 0
            assert TOKEN not in daemon.log() and esms.secret_key not in daemon.log()
        finally:
            await daemon.kill()
            await switch.stop()
            await sim.stop()
