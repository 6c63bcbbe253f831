"""Shared pieces of the alert-routing tests: a directory config, a settable clock, events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from monitor.config import Config, load_config_text
from monitor.events import DossierThresholdCrossed

__all__ = ["CODE", "UNIT", "ZONE", "Clock", "alerts_yaml", "crossing", "load", "local"]

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
