"""Helpers shared by the outbox, delivery and crash tests: an injectable clock, alerts, channel configs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from alerts.channels import ChannelConfig
from alerts.model import AlertKind, NewAlert, Severity
from tests.fakes.esms import FakeEsms
from tests.fakes.zalo import FakeZalo

__all__ = [
    "CODE",
    "PHONE",
    "SHORT_CLAIM_LEASE",
    "START",
    "Clock",
    "esms_config",
    "lapse_claims",
    "new_alert",
    "until",
    "zns_config",
]

# A claim lease tests wait out in real time on PostgreSQL, where leases run on the database's clock.
SHORT_CLAIM_LEASE = timedelta(seconds=1)

PHONE = "84912345678"
CODE = "000.00.12.H12-221005-0001"
START = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # 09:00 in Hà Nội, a Wednesday
_ADAPTER: TypeAdapter[Any] = TypeAdapter(ChannelConfig)


class Clock:
    """An injectable UTC clock that only moves when told to."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()


async def lapse_claims(clock: Clock, postgres: bool, lease: timedelta = SHORT_CLAIM_LEASE) -> None:
    """Let the claim leases taken so far lapse: on PostgreSQL they run on the database's clock, which only
    real time moves; on SQLite on the outbox's (fake) clock."""
    if postgres:
        await asyncio.sleep(lease.total_seconds() + 0.05)
    else:
        clock.advance(lease.total_seconds())


def new_alert(
    number: int = 1,
    *,
    at: datetime = START,
    channels: tuple[str, ...] = ("sms",),
    **overrides: Any,
) -> NewAlert:
    """A due-soon alert for dossier `number`, for officer `can-bo-07`, sendable at `at`."""
    code = f"000.00.12.H12-221005-{number:04d}"
    fields: dict[str, Any] = {
        "dedupe_key": f"crossing:{number}:threshold:4h:person:can-bo-07",
        "kind": AlertKind.DUE_SOON,
        "severity": Severity.WARNING,
        "person_id": "can-bo-07",
        "channels": channels,
        "text": f"[TTHC] Ho so {code} con 4 gio lam viec, han 14:00 06/10.",
        "event_at": at,
        "not_before": at,
        "template_params": {"dossier_code": code, "due_at": "14:00 06/10"},
        "phone": PHONE,
        "zalo_user_id": "zuid-77",
        "subject": f"dossier:{code}",
        "keep": (code, "14:00 06/10"),
    }
    fields.update(overrides)
    return NewAlert(**fields)


def esms_config(fake: FakeEsms, name: str = "sms", **overrides: Any) -> Any:
    return _ADAPTER.validate_python(fake.channel_settings(name, **{"timeout": "2s", **overrides}))


def zns_config(fake: FakeZalo, refresh_token: str, name: str = "zalo", **overrides: Any) -> Any:
    data: dict[str, Any] = {
        "type": "zalo_zns",
        "name": name,
        "app_id": fake.app_id,
        "secret_key": fake.secret_key,
        "refresh_token": refresh_token,
        "oauth_url": fake.oauth_url,
        "zns_url": fake.zns_url,
        "timeout": "2s",
        "templates": {
            kind: {"template_id": "T100", "params": {"ma_ho_so": "dossier_code", "han": "due_at"}}
            for kind in ("due_soon", "overdue")
        },
        **overrides,
    }
    return _ADAPTER.validate_python(data)


async def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Wait until `condition()` holds (polled), failing with `what` after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while not condition():  # noqa: ASYNC110 - the fakes have no event to wait on
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {seconds:g}s: {what}") from None
