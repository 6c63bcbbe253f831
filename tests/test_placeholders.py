"""Templates meet data in one pass: data never expands a placeholder (SMS gateways, source logins)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import TypeAdapter

from alerts.channels import ChannelConfig, ChannelDeps, create_channel
from alerts.channels.base import OutgoingMessage
from monitor.placeholders import fill_placeholders
from tests.fakes.webhook import FakeWebhookReceiver

ADAPTER: TypeAdapter[Any] = TypeAdapter(ChannelConfig)
GATEWAY_KEY = "gw-key-7f3a9c21"


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    async with FakeWebhookReceiver() as fake:
        yield fake


def hostile_message(text: str) -> OutgoingMessage:
    return OutgoingMessage(
        alert_id="alert-{secret}",
        kind="overdue",
        person_id="can-bo-07",
        text=text,
        phone="84912345678",
        zalo_user_id=None,
        template_params={"procedure": "Cap phep {secret}"},
        keep=(),
    )


def test_fill_is_one_pass() -> None:
    """A value containing another placeholder is inserted literally, in strings, dicts and lists."""
    values = {"text": "Cap phep {secret} {phone}", "secret": "KEY", "phone": "0912"}
    template = {"a": "{text}|{secret}", "b": ["{phone}", 3, "{unknown}"]}
    assert fill_placeholders(template, values) == {
        "a": "Cap phep {secret} {phone}|KEY",
        "b": ["0912", 3, "{unknown}"],
    }
    assert fill_placeholders("{text}", values, encode=str.upper) == "CAP PHEP {SECRET} {PHONE}"


@pytest.mark.parametrize("where", ["body", "url", "form"])
async def test_sms_text_cannot_pull_the_gateway_key(receiver: FakeWebhookReceiver, where: str) -> None:
    """A procedure name `Cap phep {secret}` reaches the gateway as that text, never as the key."""
    config: dict[str, Any] = {"type": "sms_http", "name": "gw", "secret": GATEWAY_KEY}
    if where == "url":
        config |= {"method": "GET", "url": receiver.base_url + "/sms?to={phone}&text={text}&key={secret}"}
    else:
        config |= {
            "url": receiver.base_url + "/sms",
            "headers": {"X-Key": "{secret}"},
            "body": {"to": "{phone}", "text": "{text}", "ref": "{id}", "key": "{secret}"},
            "body_format": "json" if where == "body" else "form",
        }
    deps = ChannelDeps()
    try:
        channel = create_channel(ADAPTER.validate_python(config), deps)
        await channel.send(hostile_message("[TTHC] Ho so 000.1 (Cap phep {secret}) qua han {phone}"))
    finally:
        await deps.aclose()
    fields = receiver.sms[0]["fields"]
    assert "Cap phep {secret}" in fields["text"] and "{phone}" in fields["text"]
    assert GATEWAY_KEY not in fields["text"]
    assert fields["key"] == GATEWAY_KEY
    if where != "url":
        assert fields["ref"] == "alert-{secret}"
