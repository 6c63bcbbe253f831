"""Shared pieces of the alert-routing tests: a directory config, a settable clock, events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from alerts.digest import Digest
from alerts.directory import Directory
from alerts.outbox import Outbox
from alerts.router import Router
from alerts.service import AlertService
from alerts.templates import Templates
from alerts.timers import Timers
from monitor.calendar import Calendars
from monitor.config import Config, load_config_text
from monitor.events import DossierThresholdCrossed, EventBus
from monitor.store import SqlStore

__all__ = [
    "CODE",
    "UNIT",
    "ZONE",
    "Clock",
    "alerts_yaml",
    "crossing",
    "load",
    "local",
    "make_router",
    "outbox_rows",
    "running_service",
    "to_fake_sms",
    "wait_for_sms",
]

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
UNIT = "000.00.12.H12"
CODE = "000.00.12.H12-261005-0001"


def local(text: str) -> datetime:
    """`2026-10-06 10:00` in Vietnam time."""
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def alerts_yaml(**overrides: Any) -> dict[str, Any]:
    """An `alerts:` section: one unit, five people with distinct roles, a log and an SMS channel."""
    section: dict[str, Any] = {
        "channels": [
            {"type": "log", "name": "log"},
            {
                "type": "sms_esms",
                "name": "sms",
                "api_key": "k-secret-1",
                "secret_key": "s-secret-2",
                "brandname": "TTHC",
            },
        ],
        "directory": {
            "units": [
                {"code": UNIT, "name": "Sở Nông nghiệp và Môi trường"},
                {"code": "U2", "name": "Tư pháp"},
            ],
            "people": [
                {
                    "id": "officer-an",
                    "name": "Nguyễn Văn An",
                    "phone": "0912 345 678",
                    "units": [UNIT],
                    "roles": ["officer"],
                    "assignee_ids": ["cb-0001"],
                    "assignee_names": ["Nguyen Van An (TNMT)"],
                },
                {"id": "desk-binh", "phone": "+84 98 765 4321", "units": [UNIT], "roles": ["one_stop"]},
                {"id": "desk-other", "phone": "0987000111", "units": ["U2"], "roles": ["one_stop"]},
                {"id": "head-cuong", "phone": "84355555555", "units": [UNIT], "roles": ["unit_head"]},
                {"id": "leader-dung", "phone": "0399999999", "roles": ["leader"]},
                {"id": "it-em", "phone": "0977777777", "roles": ["it_oncall"], "channels": ["sms", "log"]},
            ],
        },
    }
    section.update(overrides)
    return section


def load(section: dict[str, Any] | None = None, **extra: Any) -> Config:
    """A whole Config with the given alerts section (through YAML, like a real file)."""
    data = {"alerts": section if section is not None else alerts_yaml(), **extra}
    return load_config_text(yaml.safe_dump(data, allow_unicode=True), environ={})


def crossing(
    crossing_id: int = 1,
    *,
    at: datetime | None = None,
    threshold: str = "2d",
    left: timedelta = timedelta(hours=16),
    due_at: datetime | None = None,
    last: bool = False,
    code: str = CODE,
    outage: bool | None = None,
    assignee_id: str = "cb-0001",
    assignee_name: str = "Nguyễn Văn An",
) -> DossierThresholdCrossed:
    """A crossing of the test unit's dossier."""
    return DossierThresholdCrossed(
        at=at or local("2026-10-06 10:00"),
        crossing_id=crossing_id,
        code=code,
        unit_code=UNIT,
        unit_name="Sở NN&MT",
        procedure_code="1.004227",
        procedure_name="Cấp GCN QSDĐ",
        assignee_id=assignee_id,
        assignee_name=assignee_name,
        threshold=threshold,
        due_at=due_at or local("2026-10-08 10:00"),
        working_time_left=left,
        is_last_warning=last,
        outage_overlap=outage,
        outage_incident_ids=(7,) if outage else (),
    )


def make_router(
    config: Config, store: SqlStore, clock: Clock, leader: Callable[[], bool] | None = None
) -> Router:
    """A router as the service builds it: real outbox, timers table and digest on `store`; `leader`: a
    replica's election (None: one daemon)."""
    alerts = config.alerts
    directory = Directory(alerts.directory)
    calendars = Calendars(config.calendars, ZONE)
    templates = Templates(alerts.templates)
    outbox = Outbox(store, clock)
    router = Router(
        alerts,
        directory,
        calendars,
        outbox,
        clock,
        ZONE,
        templates=templates,
        timers=Timers(store),
        leader=leader,
    )
    router.digest = Digest(
        alerts.digest,
        store,
        outbox,
        directory,
        calendars,
        templates,
        ZONE,
        schedule=router.policy.schedule_digest,
        leader=leader,
    )
    return router


async def outbox_rows(store: SqlStore) -> list[dict[str, Any]]:
    rows = await store.reader.execute_fetchall(
        "SELECT dedupe_key, person_id, kind, severity, channels, text, not_before, phone,"
        " coalesce(deliver_by, not_before) FROM alert_outbox ORDER BY id"
    )
    return [
        {
            "key": row[0],
            "person": row[1],
            "kind": row[2],
            "severity": row[3],
            "channels": row[4],
            "text": row[5],
            "not_before": datetime.fromtimestamp(row[6] / 1000, UTC).astimezone(ZONE),
            "phone": row[7],
            "deliver_by": datetime.fromtimestamp(row[8] / 1000, UTC).astimezone(ZONE),
        }
        for row in rows
    ]


def to_fake_sms(section: dict[str, Any], esms: Any) -> dict[str, Any]:
    """Point the section's `sms` channel at a FakeEsms and make IT on-call (it-em) reachable by SMS only."""
    section["channels"][1].update(
        {"url": esms.url, "api_key": "fake-esms-api-key", "secret_key": "fake-esms-secret-key"}
    )
    section["directory"]["people"][5]["channels"] = ["sms"]
    return section


@asynccontextmanager
async def running_service(config: Config, store: SqlStore) -> AsyncIterator[tuple[AlertService, EventBus]]:
    """An AlertService started on `store` with its own bus, stopped (grace 2 s) on leaving."""
    bus = EventBus()
    service = AlertService(config, store, bus, Calendars(config.calendars, config.zone))
    await service.start()
    try:
        yield service, bus
    finally:
        await service.stop(grace=2)


async def wait_for_sms(esms: Any, within: float = 6.0, settle: float = 0.3) -> None:
    """Until the fake gateway got a message (or `within` passed), then `settle` more for any second one."""
    for _ in range(round(within / 0.02)):
        if esms.messages:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(settle)
