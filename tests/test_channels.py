"""Alert channels against fake gateway servers: success, error mapping, Zalo token rotation, limits."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite
import pytest
from pydantic import TypeAdapter, ValidationError
from structlog.testing import capture_logs

from alerts.channels import (
    CHANNEL_TYPES,
    CHANNELS,
    ChannelConfig,
    ChannelDeps,
    OutgoingMessage,
    build_channels,
    create_channel,
    normalize_phone,
)
from alerts.channels.base import Channel, RateLimiter
from alerts.channels.sms_esms import EsmsChannel, EsmsConfig
from alerts.channels.webhook import sign_body, verify_signature
from alerts.channels.zalo_token import ZaloTokenManager
from alerts.channels.zalo_zns import ZaloZnsChannel, ZaloZnsConfig
from alerts.errors import (
    AuthError,
    ChannelError,
    ContentRejected,
    GatewayTimeout,
    GatewayUnavailable,
    InvalidRecipient,
    PermanentError,
    QuotaExceeded,
    RateLimited,
    TemplateRejected,
    TransientError,
)
from alerts.text import count_segments
from alerts.transport import AiohttpTransport, MockTransport, TransportRequest, TransportResponse
from tests.fakes.esms import FakeEsms
from tests.fakes.speedsms import FakeSpeedSms
from tests.fakes.webhook import FakeWebhookReceiver
from tests.fakes.zalo import FakeZalo
from tests.store_engines import StoreFactory

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
PHONE = "84912345678"
CODE = "000.00.12.H55-250101-0001"
DUE = "16:30 22/01/2026"
ADAPTER: TypeAdapter[Any] = TypeAdapter(ChannelConfig)


# --- helpers ----------------------------------------------------------------------------------------


class MemoryKv:
    """An in-memory KeyValueStore that journals every write with its monotonic time."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes: list[tuple[int, str, str]] = []
        self.fail_writes = False

    async def get_value(self, key: str) -> str | None:
        return self.values.get(key)

    async def set_value(self, key: str, value: str) -> None:
        if self.fail_writes:
            raise OSError("disk full")
        self.values[key] = value
        self.writes.append((time.monotonic_ns(), key, value))


class SqliteKv:
    """A KeyValueStore on a real SQLite file, committed on every write, like the daemon's store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> SqliteKv:
        self._db = await aiosqlite.connect(self.path)
        await self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        await self._db.commit()
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def get_value(self, key: str) -> str | None:
        assert self._db is not None
        async with self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def set_value(self, key: str, value: str) -> None:
        assert self._db is not None
        await self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        await self._db.commit()


class Clock:
    """An injectable epoch clock."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def message(alert_id: str = "alert-0001", kind: str = "overdue", **overrides: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "alert_id": alert_id,
        "kind": kind,
        "person_id": "can-bo-07",
        "text": f"[TTHC] Hồ sơ {CODE} đã quá hạn xử lý lúc {DUE}. Đề nghị khẩn trương xử lý.",
        "phone": PHONE,
        "zalo_user_id": "zuid-77",
        "template_params": {"dossier_code": CODE, "due_at": DUE},
        "keep": (CODE, DUE),
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)


def zns_config(zalo: FakeZalo, refresh_token: str, **overrides: Any) -> ZaloZnsConfig:
    data: dict[str, Any] = {
        "type": "zalo_zns",
        "name": "zns",
        "app_id": zalo.app_id,
        "secret_key": zalo.secret_key,
        "refresh_token": refresh_token,
        "oauth_url": zalo.oauth_url,
        "zns_url": zalo.zns_url,
        "templates": {
            "overdue": {
                "template_id": "T100",
                "params": {"ma_ho_so": "dossier_code", "han_xu_ly": "due_at", "ma": "alert_id"},
            }
        },
        **overrides,
    }
    return ADAPTER.validate_python(data)


@pytest.fixture
async def zalo() -> AsyncIterator[FakeZalo]:
    async with FakeZalo() as fake:
        yield fake


@pytest.fixture
async def esms() -> AsyncIterator[FakeEsms]:
    async with FakeEsms() as fake:
        yield fake


@pytest.fixture
async def speedsms() -> AsyncIterator[FakeSpeedSms]:
    async with FakeSpeedSms() as fake:
        yield fake


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    async with FakeWebhookReceiver() as fake:
        yield fake


@pytest.fixture
async def deps() -> AsyncIterator[ChannelDeps]:
    deps = ChannelDeps(kv=MemoryKv())
    yield deps
    await deps.aclose()


def esms_config(fake: FakeEsms, **overrides: Any) -> EsmsConfig:
    data: dict[str, Any] = {
        "type": "sms_esms",
        "name": "esms",
        "api_key": fake.api_key,
        "secret_key": fake.secret_key,
        "brandname": "TTHC",
        "url": fake.url,
        "callback_url": "https://monitor.example.vn/esms/callback",
        **overrides,
    }
    return ADAPTER.validate_python(data)


# --- values: phones, messages, errors, configs ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0912345678", "84912345678"),
        ("+84912345678", "84912345678"),
        ("84912345678", "84912345678"),
        ("0912 345 678", "84912345678"),
        ("091.234.5678", "84912345678"),
        ("+84 91 234 5678", "84912345678"),
        ("(+84) 912-345-678", "84912345678"),
        ("0387654321", "84387654321"),
        ("0523456789", "84523456789"),
        ("0701234567", "84701234567"),
        ("0861234567", "84861234567"),
    ],
)
def test_normalize_phone(text: str, expected: str) -> None:
    """Every common way of writing a Vietnamese mobile number normalises to 84xxxxxxxxx."""
    assert normalize_phone(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("091234567", "10 digits"),
        ("09123456789", "10 digits"),
        ("0212345678", "not a vietnamese mobile"),  # landline area code
        ("0112345678", "not a vietnamese mobile"),
        ("+1 415 555 0100", "only digits"),
        ("0912abc678", "only digits"),
        ("", "empty"),
        ("849123456789", "10 digits"),
    ],
)
def test_normalize_phone_rejects_bad_numbers(text: str, error: str) -> None:
    """Bad numbers raise ValueError with a clear, lowercase message that does not echo the full number."""
    with pytest.raises(ValueError, match=error) as info:
        normalize_phone(text)
    if len(text) > 6:
        assert text not in str(info.value)


def test_outgoing_message_limits_and_repr() -> None:
    """alert_id is at most 50 characters and repr() shows no phone number or text."""
    with pytest.raises(ValueError, match="1 to 50"):
        message(alert_id="x" * 51)
    text = repr(message())
    assert PHONE not in text and "quá hạn" not in text and "alert-0001" in text


def test_error_tree() -> None:
    """The exception tree matches the documented retry/fallback semantics."""
    assert issubclass(RateLimited, TransientError) and issubclass(GatewayTimeout, TransientError)
    assert issubclass(InvalidRecipient, PermanentError) and issubclass(ContentRejected, PermanentError)
    assert not issubclass(AuthError, (TransientError, PermanentError))
    assert not issubclass(QuotaExceeded, (TransientError, PermanentError))
    error = RateLimited("slow down", channel="esms", code=429, retry_after=3)
    assert str(error) == "esms: slow down (code 429)" and error.retry_after == 3
    assert AuthError("x", reauthorization_required=True).reauthorization_required


def test_channel_types_registry() -> None:
    """Every union member has a factory and the tags are exported for register_union_tags."""
    assert (
        set(CHANNEL_TYPES)
        == set(CHANNELS)
        == {
            "zalo_zns",
            "zalo_oa",
            "sms_esms",
            "sms_speedsms",
            "sms_http",
            "webhook",
            "log",
        }
    )


def test_config_defaults_are_the_real_services() -> None:
    """Endpoint URLs default to the real gateways from the domain reference."""
    zns = ADAPTER.validate_python(
        {"type": "zalo_zns", "name": "z", "app_id": "1", "secret_key": "s", "refresh_token": "r"}
    )
    assert zns.oauth_url == "https://oauth.zaloapp.com/v4/oa/access_token"
    assert zns.zns_url == "https://business.openapi.zalo.me/message/template"
    oa = ADAPTER.validate_python(
        {"type": "zalo_oa", "name": "o", "app_id": "1", "secret_key": "s", "refresh_token": "r"}
    )
    assert oa.oa_url == "https://openapi.zalo.me/v3.0/oa/message/cs"
    sms = ADAPTER.validate_python(
        {"type": "sms_esms", "name": "e", "api_key": "k", "secret_key": "s", "brandname": "TTHC"}
    )
    assert sms.url.startswith("https://rest.esms.vn/MainService.svc/json/SendMultipleMessage_V4_post_json")
    assert (sms.sms_type, sms.unaccented, sms.max_segments, sms.concurrency) == ("2", True, 2, 16)
    speed = ADAPTER.validate_python({"type": "sms_speedsms", "name": "s", "token": "t"})
    assert (speed.concurrency, oa.concurrency) == (4, 4), "no idempotency key: few repeats after a kill -9"
    assert speed.url == "https://api.speedsms.vn/index.php/sms/send"


def test_config_secrets_from_files_and_hidden(tmp_path: Path) -> None:
    """Secrets load from *_file and never show in repr() or in validation errors."""
    (tmp_path / "key").write_text("esms-api-key-from-file\n")
    config = ADAPTER.validate_python(
        {
            "type": "sms_esms",
            "name": "e",
            "api_key_file": str(tmp_path / "key"),
            "secret_key": "esms-secret-inline",
            "brandname": "TTHC",
        }
    )
    assert config.api_key.get_secret_value() == "esms-api-key-from-file"
    for text in (repr(config), str(config), config.model_dump_json()):
        assert "esms-api-key-from-file" not in text and "esms-secret-inline" not in text
    zalo = ADAPTER.validate_python(
        {
            "type": "zalo_zns",
            "name": "z",
            "app_id": "1",
            "secret_key": "zalo-secret-x",
            "refresh_token": "rt-y",
        }
    )
    assert "zalo-secret-x" not in repr(zalo) and "rt-y" not in repr(zalo)
    with pytest.raises(ValidationError) as info:
        ADAPTER.validate_python({"type": "sms_esms", "name": "e", "api_key": "leaky-key", "secret_key": "s"})
    assert "brandname is required" in str(info.value)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"type": "sms_esms", "name": "e", "api_key": "k", "secret_key": "s"}, "brandname is required"),
        ({"type": "sms_speedsms", "name": "s", "token": "t", "sms_type": 3}, "sender is required"),
        ({"type": "sms_http", "name": "h", "url": "http://x/send?to={phone}"}, "placeholder {text}"),
        (
            {"type": "sms_http", "name": "h", "url": "http://x/{phone}/{text}", "headers": {"K": "{secret}"}},
            "secret is not set",
        ),
        ({"type": "webhook", "name": "bad name!", "url": "http://x"}, "not a valid channel name"),
        ({"type": "log", "name": "l", "concurrency": 0}, "greater than or equal to 1"),
        ({"type": "log", "name": "l", "unknown": 1}, "extra"),
        ({"type": "pager", "name": "p"}, "does not match any of the expected tags"),
    ],
)
def test_config_validation_errors(data: dict[str, Any], error: str) -> None:
    """Invalid channel configs are refused with a precise message."""
    with pytest.raises(ValidationError, match=error.replace("{", r"\{").replace("}", r"\}")):
        ADAPTER.validate_python(data)


# --- transport ----------------------------------------------------------------------------------------


async def test_aiohttp_transport_errors_translate() -> None:
    """Connection refused and timeouts become GatewayUnavailable and GatewayTimeout, naming only the host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = AiohttpTransport()
    try:
        with pytest.raises(GatewayUnavailable, match=f"cannot reach 127.0.0.1:{port}") as info:
            await transport.request("GET", f"http://127.0.0.1:{port}/x?key=topsecret", timeout=2)
        assert "topsecret" not in str(info.value)
        with pytest.raises(GatewayUnavailable, match=f"cannot reach 127.0.0.1:{port}:") as info:
            await transport.request("GET", f"http://user:pa55word@127.0.0.1:{port}/", timeout=2)
        assert "pa55word" not in str(info.value) and "user" not in str(info.value)
        async with FakeEsms() as fake:
            fake.down = True
            response = await transport.request("POST", fake.url, json={"a": 1}, timeout=2)
            assert response.status == 500
    finally:
        await transport.close()


async def test_mock_transport_sees_encoded_request() -> None:
    """MockTransport hands the handler the exact body and headers, and enforces the timeout."""

    async def slow(request: TransportRequest) -> TransportResponse:
        await asyncio.sleep(1)
        return TransportResponse(200)

    seen: list[TransportRequest] = []

    def handler(request: TransportRequest) -> TransportResponse:
        seen.append(request)
        return TransportResponse.from_json({"ok": True}, headers={"X-A": "1"})

    transport = MockTransport(handler)
    response = await transport.request("post", "http://gw/x", data={"a": "b c"}, timeout=1)
    assert response.json() == {"ok": True} and response.header("x-a") == "1"
    assert seen[0].method == "POST" and seen[0].form() == {"a": "b c"}
    assert seen[0].header("content-type") == "application/x-www-form-urlencoded"
    assert "b c" not in repr(seen[0])
    with pytest.raises(GatewayTimeout):
        await MockTransport(slow).request("GET", "http://gw/", timeout=0.05)


# --- Zalo ZNS -----------------------------------------------------------------------------------------


async def test_zns_success(zalo: FakeZalo, deps: ChannelDeps) -> None:
    """A ZNS send refreshes a token, fills the template from the message and uses alert_id as tracking_id."""
    channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
    receipt = await channel.send(message())
    assert isinstance(channel, Channel) and channel.type == "zalo_zns"
    sent = zalo.messages[0]
    assert sent["phone"] == PHONE and sent["template_id"] == "T100" and sent["tracking_id"] == "alert-0001"
    assert sent["template_data"] == {"ma_ho_so": CODE, "han_xu_ly": DUE, "ma": "alert-0001"}
    assert receipt.provider_message_id == sent["msg_id"] and receipt.channel == "zns"
    stored = json.loads(deps.kv.values["zalo.oauth." + zalo.app_id])  # type: ignore[union-attr]
    assert stored["refresh_token"] in zalo.valid_refresh_tokens
    # Resending the same alert is de-duplicated by Zalo on tracking_id.
    again = await channel.send(message())
    assert again.provider_message_id == receipt.provider_message_id and zalo.duplicates == 1
    assert zalo.refreshes == 1
    await channel.close()


@pytest.mark.parametrize(
    ("setup", "error", "code"),
    [
        (lambda z: z.invalid_phones.add(PHONE), InvalidRecipient, "-108"),
        (lambda z: setattr(z, "templates", {"T999": set()}), TemplateRejected, "-109"),
        (lambda z: setattr(z, "templates", {"T100": {"ma_ho_so", "ten_dv"}}), TemplateRejected, "-112"),
        (lambda z: setattr(z, "daily_quota", 0), QuotaExceeded, "-144"),
        (lambda z: setattr(z, "force_status", 500), GatewayUnavailable, "500"),
        (lambda z: setattr(z, "force_error", -999), PermanentError, "-999"),
        (lambda z: setattr(z, "force_error", -104), AuthError, "-104"),
    ],
)
async def test_zns_errors(zalo: FakeZalo, deps: ChannelDeps, setup: Any, error: type, code: str) -> None:
    """Each ZNS error code maps to its documented class, with the channel name and no full phone."""
    channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
    setup(zalo)
    with pytest.raises(error) as info:
        await channel.send(message())
    assert type(info.value) is error
    assert info.value.channel == "zns" and info.value.code == code
    assert PHONE not in str(info.value)


async def test_zns_rate_limited_honours_retry_after(zalo: FakeZalo, deps: ChannelDeps) -> None:
    """HTTP 429 becomes RateLimited carrying the Retry-After seconds."""
    channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
    zalo.force_status, zalo.retry_after = 429, 42
    with pytest.raises(RateLimited) as info:
        await channel.send(message())
    assert info.value.retry_after == 42


@pytest.mark.parametrize(("local_time", "wait"), [("23:00", 8 * 3600), ("05:30", 5400), ("12:00", 300)])
async def test_zns_outside_hours_retries_at_seven(zalo: FakeZalo, local_time: str, wait: float) -> None:
    """-133 (template outside 07:00-22:00) is transient, with retry_after until 07:00 local."""
    now = datetime.fromisoformat(f"2026-01-22T{local_time}:00").replace(tzinfo=ZONE).timestamp()
    deps = ChannelDeps(kv=MemoryKv(), clock=Clock(now))
    try:
        channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
        zalo.outside_hours = True
        with pytest.raises(TransientError) as info:
            await channel.send(message())
        assert type(info.value) is TransientError and info.value.retry_after == wait
    finally:
        await deps.aclose()


async def test_zns_missing_phone_or_template(zalo: FakeZalo, deps: ChannelDeps) -> None:
    """Without a phone or a template for the kind, nothing is sent and the error is permanent."""
    channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
    with pytest.raises(InvalidRecipient):
        await channel.send(message(phone=None))
    with pytest.raises(TemplateRejected, match="no zns template"):
        await channel.send(message(kind="target_down"))
    with pytest.raises(TemplateRejected, match="needs field"):
        await channel.send(message(template_params={}))
    assert zalo.messages == []


@pytest.mark.parametrize("expired_reply", ["error", "http401"])
async def test_zns_refreshes_expired_token(zalo: FakeZalo, deps: ChannelDeps, expired_reply: str) -> None:
    """An expired-token reply (-216 or HTTP 401) triggers one refresh and one resend inside send()."""
    zalo.expired_reply = expired_reply  # type: ignore[assignment]
    channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
    await channel.send(message("a-1"))
    zalo.expire_access_tokens()
    receipt = await channel.send(message("a-2"))
    assert receipt.provider_message_id == zalo.messages[-1]["msg_id"]
    assert zalo.refreshes == 2 and len(zalo.messages) == 2
    assert zalo.messages[0]["access_token"] != zalo.messages[1]["access_token"]


async def test_zns_refreshes_ahead_of_expiry(zalo: FakeZalo) -> None:
    """Within refresh_margin of expiry the manager refreshes before sending, so Zalo never says -216."""
    clock = Clock()
    deps = ChannelDeps(kv=MemoryKv(), clock=clock)
    try:
        channel = create_channel(zns_config(zalo, zalo.issue_refresh_token(), refresh_margin="5m"), deps)
        await channel.send(message("a-1"))
        manager = deps.token_managers[zalo.app_id]
        assert manager.access_token_expires_at == pytest.approx(clock.now + zalo.access_token_ttl)
        clock.now += zalo.access_token_ttl - 240  # 4 minutes left
        await channel.send(message("a-2"))
        assert zalo.refreshes == 2
        # Two ZNS requests for two sends: the second did not meet an expired token and retry.
        zns_requests = [r for r in zalo.requests if r.path == zalo.ZNS_PATH]
        assert len(zns_requests) == 2
    finally:
        await deps.aclose()


async def test_zns_single_refresh_under_concurrency(zalo: FakeZalo, deps: ChannelDeps) -> None:
    """Twenty concurrent sends meeting an expired token cause exactly one refresh."""
    zalo.oauth_delay = 0.05
    channel = create_channel(zns_config(zalo, zalo.issue_refresh_token(), concurrency=20), deps)
    await asyncio.gather(*(channel.send(message(f"cold-{i}")) for i in range(20)))
    assert zalo.refreshes == 1
    zalo.expire_access_tokens()
    await asyncio.gather(*(channel.send(message(f"warm-{i}")) for i in range(20)))
    assert zalo.refreshes == 2 and zalo.rejected_refreshes == 0
    assert len(zalo.messages) == 40


async def test_rotated_refresh_token_is_stored_before_use(zalo: FakeZalo) -> None:
    """The new refresh token reaches the store before the new access token is first used."""
    kv = MemoryKv()
    deps = ChannelDeps(kv=kv)
    try:
        channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
        await channel.send(message("a-1"))
        zalo.expire_access_tokens()
        await channel.send(message("a-2"))
    finally:
        await deps.aclose()
    assert len(kv.writes) == 2
    for (written_ns, _, _), sent in zip(kv.writes, zalo.messages, strict=True):
        first_use = min(
            r.received_ns
            for r in zalo.requests
            if r.path == zalo.ZNS_PATH and r.header("access_token") == sent["access_token"]
        )
        assert written_ns < first_use
    stored = [json.loads(value)["refresh_token"] for _, _, value in kv.writes]
    # The first rotated token was spent by the second refresh; the newest one is the live one.
    assert stored[0] not in zalo.valid_refresh_tokens and stored[1] in zalo.valid_refresh_tokens


async def test_new_access_token_unused_while_refresh_token_is_written(zalo: FakeZalo) -> None:
    """While the rotated refresh token is being written, a send arriving meanwhile must not use the new
    access token (it waits for the write)."""
    checks: list[bool] = []
    late_sends: list[asyncio.Task[Any]] = []
    holder: dict[str, Any] = {}

    class SlowKv(MemoryKv):
        async def set_value(self, key: str, value: str) -> None:
            # A send that arrives during a slow disk write.
            late_sends.append(asyncio.create_task(holder["channel"].send(message(f"late-{len(late_sends)}"))))
            await asyncio.sleep(0.05)
            newest = list(zalo.access_tokens)[-1]
            used = {r.header("access_token") for r in zalo.requests if r.path == zalo.ZNS_PATH}
            checks.append(newest not in used)
            await super().set_value(key, value)

    deps = ChannelDeps(kv=SlowKv())
    try:
        holder["channel"] = channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
        await channel.send(message("a-1"))
        zalo.expire_access_tokens()
        await channel.send(message("a-2"))
        await asyncio.gather(*late_sends)
    finally:
        await deps.aclose()
    assert checks == [True, True] and len(zalo.messages) == 4 and zalo.refreshes == 2


async def test_restart_resumes_with_newest_refresh_token(zalo: FakeZalo, tmp_path: Path) -> None:
    """A new manager on the same SQLite store uses the rotated token, not the (now dead) configured one."""
    initial = zalo.issue_refresh_token()
    config = zns_config(zalo, initial)
    for run in range(3):
        # Expired at Zalo since the last run: the stored access token is refused and the stored refresh
        # token must be the one that works.
        zalo.expire_access_tokens()
        kv = await SqliteKv(tmp_path / "state.db").open()
        deps = ChannelDeps(kv=kv)
        try:
            channel = create_channel(config, deps)
            await channel.send(message(f"run-{run}"))
        finally:
            await deps.aclose()
            await kv.close()
    assert zalo.refreshes == 3 and zalo.rejected_refreshes == 0
    assert initial not in zalo.valid_refresh_tokens


async def test_restart_with_the_daemon_store(stores: StoreFactory, zalo: FakeZalo, tmp_path: Path) -> None:
    """The same rotation survives restarts on the daemon's own store's key/value table (both engines)."""
    config = zns_config(zalo, zalo.issue_refresh_token())
    for run in range(3):
        if run == 2:
            zalo.expire_access_tokens()
        async with stores.new(tmp_path / "monitor.db") as store:
            deps = ChannelDeps(kv=store)
            try:
                await create_channel(config, deps).send(message(f"run-{run}"))
            finally:
                await deps.aclose()
    # The second run reuses the stored access token; the third finds it expired and rotates.
    assert zalo.refreshes == 2 and zalo.rejected_refreshes == 0 and len(zalo.messages) == 3


async def test_reauthorised_config_token_wins_over_stored(zalo: FakeZalo) -> None:
    """When the operator configures a new refresh token, it replaces the rotated one in the store."""
    kv = MemoryKv()
    deps = ChannelDeps(kv=kv)
    await create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps).send(message("a-1"))
    await deps.aclose()
    stale = json.loads(kv.values["zalo.oauth." + zalo.app_id])["refresh_token"]
    zalo.valid_refresh_tokens.discard(stale)  # e.g. the app was re-authorised elsewhere
    fresh = zalo.issue_refresh_token()
    deps = ChannelDeps(kv=kv)
    try:
        await create_channel(zns_config(zalo, fresh), deps).send(message("a-2"))
    finally:
        await deps.aclose()
    assert zalo.rejected_refreshes == 0 and fresh not in zalo.valid_refresh_tokens


async def test_reauthorization_required(zalo: FakeZalo, deps: ChannelDeps) -> None:
    """A refused refresh token raises AuthError(reauthorization_required), logs loudly, stops retrying."""
    bad = "rt-never-issued-secret"
    channel = create_channel(zns_config(zalo, bad), deps)
    with capture_logs() as logs:
        with pytest.raises(AuthError) as info:
            await channel.send(message())
        with pytest.raises(AuthError):
            await channel.send(message("a-2"))
    assert info.value.reauthorization_required and info.value.channel == "zns"
    manager = deps.token_managers[zalo.app_id]
    assert manager.reauthorization_required and manager.access_token_expires_at is None
    assert channel.healthy is False  # type: ignore[attr-defined]
    assert zalo.rejected_refreshes == 1  # the second send did not hit the OAuth endpoint again
    events = [entry for entry in logs if entry["event"] == "zalo_reauthorization_required"]
    assert len(events) == 1 and events[0]["log_level"] == "error"
    for text in (str(logs), str(info.value), repr(manager)):
        assert bad not in text and zalo.secret_key not in text


async def test_token_rejected_after_refresh_is_auth_error(zalo: FakeZalo, deps: ChannelDeps) -> None:
    """If even a fresh access token is refused, send() gives up after one retry with AuthError."""
    zalo.access_token_ttl = -1  # every issued token is already expired at Zalo
    channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
    with pytest.raises(AuthError) as info:
        await channel.send(message())
    assert not info.value.reauthorization_required and info.value.code == "-216"
    assert zalo.refreshes == 2 and zalo.messages == []


async def test_store_failure_keeps_the_rotated_token_and_uses_the_access_token(zalo: FakeZalo) -> None:
    """If the rotated token cannot be stored, the fresh access token is used anyway and the write is
    retried before the next send; Zalo sees one rotation."""
    kv = MemoryKv()
    kv.fail_writes = True
    deps = ChannelDeps(kv=kv)
    try:
        channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
        with capture_logs() as logs:
            await channel.send(message("a-1"))
        assert len(zalo.messages) == 1 and any(e["event"] == "zalo_token_store_failed" for e in logs)
        manager = deps.token_managers[zalo.app_id]
        assert manager.unsaved and kv.writes == []
        kv.fail_writes = False
        await channel.send(message("a-2"))
        assert zalo.refreshes == 1 and zalo.rejected_refreshes == 0 and len(kv.writes) == 1
        assert not manager.unsaved
        assert json.loads(kv.writes[0][2])["refresh_token"] in zalo.valid_refresh_tokens
    finally:
        await deps.aclose()


# --- Zalo OA ------------------------------------------------------------------------------------------


async def test_oa_send_and_shared_token(zalo: FakeZalo, deps: ChannelDeps) -> None:
    """OA messages reach followers; ZNS and OA of one app share one token manager and one refresh."""
    token = zalo.issue_refresh_token()
    zalo.followers.add("zuid-77")
    configs = [
        zns_config(zalo, token),
        ADAPTER.validate_python(
            {
                "type": "zalo_oa",
                "name": "oa",
                "app_id": zalo.app_id,
                "secret_key": zalo.secret_key,
                "refresh_token": token,
                "oauth_url": zalo.oauth_url,
                "oa_url": zalo.oa_url,
            }
        ),
    ]
    channels = build_channels(configs, deps)
    receipt = await channels["oa"].send(message())
    await channels["zns"].send(message())
    assert zalo.refreshes == 1
    sent = next(m for m in zalo.messages if m["api"] == "oa")
    assert sent["user_id"] == "zuid-77" and CODE in sent["text"] and receipt.provider_message_id
    with pytest.raises(InvalidRecipient) as info:
        await channels["oa"].send(message(zalo_user_id="stranger"))
    assert info.value.code == "-213"
    with pytest.raises(InvalidRecipient, match="no zalo user id"):
        await channels["oa"].send(message(zalo_user_id=None))
    with pytest.raises(ValueError, match="duplicate channel name"):
        build_channels([configs[0], configs[0]], deps)


# --- eSMS ---------------------------------------------------------------------------------------------


async def test_esms_success(esms: FakeEsms, deps: ChannelDeps) -> None:
    """eSMS gets the unaccented text, GSM-7 flag, brandname, RequestId = alert_id and the callback URL."""
    channel = create_channel(esms_config(esms), deps)
    receipt = await channel.send(message())
    sent = esms.messages[0]
    assert sent["phone"] == PHONE and sent["request_id"] == "alert-0001" and sent["brandname"] == "TTHC"
    assert sent["content"] == f"[TTHC] Ho so {CODE} da qua han xu ly luc {DUE}. De nghi khan truong xu ly."
    assert sent["is_unicode"] == "0" and sent["sandbox"] == "0"
    assert sent["callback_url"] == "https://monitor.example.vn/esms/callback"
    assert receipt.provider_message_id == sent["sms_id"] and receipt.segments == 1 and not receipt.duplicate


async def test_esms_duplicate_request_id_is_success(esms: FakeEsms, deps: ChannelDeps) -> None:
    """Resending an alert gets 124 from eSMS, reported as a successful duplicate; one SMS goes out."""
    channel = create_channel(esms_config(esms), deps)
    await channel.send(message())
    receipt = await channel.send(message())
    assert receipt.duplicate and esms.duplicates == 1 and len(esms.messages) == 1


async def test_esms_unicode_and_fitting(esms: FakeEsms, deps: ChannelDeps) -> None:
    """With unaccented off the SMS is UCS-2; long texts are fitted to max_segments keeping code and due."""
    channel = create_channel(esms_config(esms, unaccented=False, max_segments=1), deps)
    long_text = f"Hồ sơ {CODE} " + "của công dân đang chờ xử lý " * 10 + f"hạn {DUE}"
    await channel.send(message(text=long_text))
    sent = esms.messages[0]
    assert sent["is_unicode"] == "1" and count_segments(sent["content"]) == 1
    assert CODE in sent["content"] and DUE in sent["content"]
    with pytest.raises(ContentRejected, match="does not fit"):
        await channel.send(message("a-2", text="x" * 200, keep=("x" * 200,)))


@pytest.mark.parametrize(
    ("setup", "overrides", "error", "code"),
    [
        (lambda f: f.blocked_phones.add(PHONE), {}, InvalidRecipient, "99"),
        (lambda f: None, {"api_key": "wrong-api-key-123"}, AuthError, "101"),
        (lambda f: setattr(f, "balance", 0), {}, QuotaExceeded, "103"),
        (lambda f: None, {"brandname": "NOTREG"}, ContentRejected, "104"),
        (lambda f: None, {}, InvalidRecipient, "108"),
        (lambda f: setattr(f, "ip_whitelisted", False), {}, AuthError, "140"),
        (lambda f: setattr(f, "template_prefixes", ["[UBND]"]), {}, TemplateRejected, "146"),
        (lambda f: setattr(f, "down", True), {}, GatewayUnavailable, "500"),
    ],
)
async def test_esms_errors(
    esms: FakeEsms, deps: ChannelDeps, setup: Any, overrides: dict[str, Any], error: type, code: str
) -> None:
    """Each eSMS reply code maps to its documented class; keys and full phones stay out of messages."""
    setup(esms)
    channel = create_channel(esms_config(esms, **overrides), deps)
    phone = "84123" if code == "108" else PHONE
    with pytest.raises(error) as info:
        await channel.send(message(phone=phone))
    assert type(info.value) is error and info.value.code == code and info.value.channel == "esms"
    for secret in ("wrong-api-key-123", esms.api_key, esms.secret_key, PHONE):
        assert secret not in str(info.value)


async def test_esms_rate_limited(esms: FakeEsms, deps: ChannelDeps) -> None:
    """HTTP 429 from eSMS becomes RateLimited with retry_after."""
    esms.rate_limited = True
    with pytest.raises(RateLimited) as info:
        await create_channel(esms_config(esms), deps).send(message())
    assert info.value.retry_after == 20


async def test_esms_unknown_code_and_timeout() -> None:
    """An unknown code is transient; a gateway that does not answer in time gives GatewayTimeout."""
    replies = iter([TransportResponse.from_json({"CodeResult": "177"})])

    async def handler(request: TransportRequest) -> TransportResponse:
        try:
            return next(replies)
        except StopIteration:
            await asyncio.sleep(1)
            raise AssertionError("timeout not enforced") from None

    transport = MockTransport(handler)
    deps = ChannelDeps(transport=transport)
    config = ADAPTER.validate_python(
        {
            "type": "sms_esms",
            "name": "e",
            "api_key": "k",
            "secret_key": "s",
            "brandname": "B",
            "timeout": "50ms",
        }
    )
    channel = create_channel(config, deps)
    with pytest.raises(TransientError) as info:
        await channel.send(message())
    assert type(info.value) is TransientError and info.value.code == "177"
    with pytest.raises(GatewayTimeout) as timeout:
        await channel.send(message())
    assert timeout.value.channel == "e"
    assert transport.requests[0].json()["Sandbox"] == "0"


# --- SpeedSMS -----------------------------------------------------------------------------------------


def speedsms_config(fake: FakeSpeedSms, **overrides: Any) -> Any:
    return ADAPTER.validate_python(
        {"type": "sms_speedsms", "name": "speed", "token": fake.token, "url": fake.url, **overrides}
    )


async def test_speedsms_success(speedsms: FakeSpeedSms, deps: ChannelDeps) -> None:
    """SpeedSMS gets Basic auth, the number in `to` and the unaccented content."""
    receipt = await create_channel(speedsms_config(speedsms), deps).send(message())
    sent = speedsms.messages[0]
    assert sent["phone"] == PHONE and "Ho so" in sent["content"] and sent["sms_type"] == 2
    assert receipt.provider_message_id == str(sent["tran_id"])


@pytest.mark.parametrize(
    ("setup", "overrides", "phone", "error"),
    [
        (lambda f: None, {"token": "wrong-token-xyz"}, PHONE, AuthError),
        (lambda f: None, {}, "84123456", InvalidRecipient),
        (lambda f: setattr(f, "balance", 0), {}, PHONE, QuotaExceeded),
        (lambda f: setattr(f, "force_code", "113"), {}, PHONE, ContentRejected),
        (lambda f: setattr(f, "force_code", "007"), {}, PHONE, AuthError),
        (lambda f: setattr(f, "force_code", "105"), {}, PHONE, InvalidRecipient),
        (lambda f: setattr(f, "force_code", "123"), {}, PHONE, PermanentError),
        (lambda f: setattr(f, "down", True), {}, PHONE, GatewayUnavailable),
    ],
)
async def test_speedsms_errors(
    speedsms: FakeSpeedSms, deps: ChannelDeps, setup: Any, overrides: dict[str, Any], phone: str, error: type
) -> None:
    """SpeedSMS failures map to the documented classes without leaking the token."""
    setup(speedsms)
    with pytest.raises(error) as info:
        await create_channel(speedsms_config(speedsms, **overrides), deps).send(message(phone=phone))
    assert type(info.value) is error
    assert "wrong-token-xyz" not in str(info.value) and speedsms.token not in str(info.value)
    assert speedsms.messages == []


# --- generic HTTP SMS ---------------------------------------------------------------------------------


async def test_http_sms_json_form_and_get(receiver: FakeWebhookReceiver, deps: ChannelDeps) -> None:
    """The configured request is filled with phone, text, id and secret; success and id come from JSON."""
    base = {
        "type": "sms_http",
        "name": "gw",
        "secret": "gw-secret",
        "success": {"json_path": "result", "equals": "ok"},
        "message_id_path": "id",
    }
    json_channel = create_channel(
        ADAPTER.validate_python(
            {
                **base,
                "url": receiver.base_url + "/sms",
                "headers": {"Authorization": "Bearer {secret}"},
                "body": {"to": "{phone}", "msg": "{text}", "ref": "{id}", "meta": {"list": ["{phone}"]}},
                "phone_format": "0",
            }
        ),
        deps,
    )
    receipt = await json_channel.send(message())
    fields = receiver.sms[0]["fields"]
    assert (
        fields["to"] == "0912345678"
        and fields["ref"] == "alert-0001"
        and fields["meta"] == {"list": ["0912345678"]}
    )
    assert fields["msg"].startswith("[TTHC] Ho so") and receipt.provider_message_id == "sms-1"
    assert receiver.sms[0]["headers"]["Authorization"] == "Bearer gw-secret"
    form_channel = create_channel(
        ADAPTER.validate_python(
            {
                **base,
                "url": receiver.base_url + "/sms",
                "body_format": "form",
                "body": {"p": "{phone}", "t": "{text}"},
            }
        ),
        deps,
    )
    await form_channel.send(message())
    assert receiver.sms[1]["fields"]["p"] == PHONE
    get_channel = create_channel(
        ADAPTER.validate_python(
            {**base, "method": "GET", "url": receiver.base_url + "/sms?to={phone}&text={text}&key={secret}"}
        ),
        deps,
    )
    await get_channel.send(message())
    assert receiver.sms[2]["fields"]["text"].endswith("khan truong xu ly.")
    assert receiver.sms[2]["fields"]["key"] == "gw-secret"
    receiver.reply = {"result": "fail"}
    with pytest.raises(PermanentError, match="does not report success"):
        await json_channel.send(message())
    receiver.status = 403
    with pytest.raises(AuthError):
        await json_channel.send(message())


# --- webhook and log ----------------------------------------------------------------------------------


def webhook_config(receiver: FakeWebhookReceiver, secret: str | None) -> Any:
    data: dict[str, Any] = {
        "type": "webhook",
        "name": "hook",
        "url": receiver.url,
        "headers": {"X-Env": "test"},
    }
    if secret is not None:
        data["secret"] = secret
    return ADAPTER.validate_python(data)


async def test_webhook_signed_and_verified(receiver: FakeWebhookReceiver, deps: ChannelDeps) -> None:
    """The receiver verifies the HMAC-SHA256 signature of the raw body; the payload has no phone number."""
    assert receiver.secret is not None
    channel = create_channel(webhook_config(receiver, receiver.secret), deps)
    receipt = await channel.send(message())
    await channel.send(message())
    assert receiver.bad_signatures == 0 and receiver.duplicates == 1 and len(receiver.accepted) == 1
    document = receiver.accepted[0]
    assert document["alert_id"] == "alert-0001" and document["params"]["dossier_code"] == CODE
    assert PHONE not in json.dumps(document) and receipt.provider_message_id == "hook-1"
    request = next(r for r in receiver.requests if r.path == "/hook")
    assert request.header("X-Env") == "test"
    assert request.header("X-TTHC-Signature") == sign_body(receiver.secret, request.body)
    assert verify_signature(receiver.secret, request.body, request.header("X-TTHC-Signature"))
    assert not verify_signature(receiver.secret, request.body + b" ", request.header("X-TTHC-Signature"))


async def test_webhook_bad_secret_and_server_error(receiver: FakeWebhookReceiver, deps: ChannelDeps) -> None:
    """A wrong secret is an AuthError; a 5xx is transient; other 4xx are permanent."""
    with pytest.raises(AuthError) as info:
        await create_channel(webhook_config(receiver, "wrong-secret-abc"), deps).send(message())
    assert receiver.bad_signatures == 1 and "wrong-secret-abc" not in str(info.value)
    channel = create_channel(webhook_config(receiver, receiver.secret), deps)
    receiver.status = 503
    with pytest.raises(GatewayUnavailable):
        await channel.send(message())
    receiver.status = 410
    with pytest.raises(PermanentError):
        await channel.send(message())


async def test_log_channel_dry_run(deps: ChannelDeps) -> None:
    """The log channel logs the alert with structlog and never the phone number."""
    channel = create_channel(ADAPTER.validate_python({"type": "log", "name": "dry"}), deps)
    with capture_logs() as logs:
        receipt = await channel.send(message())
    assert receipt.provider_message_id == "log-alert-0001"
    (entry,) = logs
    assert entry["event"] == "alert_dry_run" and entry["text"].startswith("[TTHC]") and entry["has_phone"]
    assert PHONE not in str(logs)


# --- limits -------------------------------------------------------------------------------------------


async def test_concurrency_limit_and_unexpected_errors() -> None:
    """A channel never has more than `concurrency` sends in flight; stray exceptions become ChannelErrors."""
    in_flight = peak = 0

    async def handler(request: TransportRequest) -> TransportResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        if request.json()["RequestId"] == "boom":
            raise RuntimeError("handler bug")
        return TransportResponse.from_json({"CodeResult": "100", "SMSID": "1"})

    deps = ChannelDeps(transport=MockTransport(handler))
    config = ADAPTER.validate_python(
        {
            "type": "sms_esms",
            "name": "e",
            "api_key": "k",
            "secret_key": "s",
            "brandname": "B",
            "concurrency": 3,
        }
    )
    channel = create_channel(config, deps)
    await asyncio.gather(*(channel.send(message(f"id-{i}")) for i in range(12)))
    assert peak == 3
    with pytest.raises(ChannelError, match="unexpected RuntimeError"):
        await channel.send(message("boom"))
    assert isinstance(channel, EsmsChannel) and channel.sent == 12 and channel.failed == 1


async def test_rate_limiter_token_bucket() -> None:
    """The bucket allows a burst, then spaces sends at 1/rate seconds."""
    now = 0.0
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        nonlocal now
        slept.append(seconds)
        now += seconds

    limiter = RateLimiter(2.0, clock=lambda: now, sleep=sleep)
    for _ in range(6):
        await limiter.acquire()
    assert slept == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert now == pytest.approx(2.0)
    with pytest.raises(ValueError):
        RateLimiter(0)


async def test_channel_rate_per_second_is_applied(deps: ChannelDeps) -> None:
    """rate_per_second on a channel spaces its sends."""
    channel = create_channel(
        ADAPTER.validate_python({"type": "log", "name": "dry", "rate_per_second": 20}), deps
    )
    started = time.monotonic()
    with capture_logs():
        for i in range(22):  # burst of 20, then two more at 50 ms each
            await channel.send(message(f"r-{i}"))
    assert time.monotonic() - started >= 0.09


def test_zns_channel_class() -> None:
    """The ZNS factory is the ZNS channel class, and the token manager is the documented one."""
    assert CHANNELS["zalo_zns"] is ZaloZnsChannel and ZaloTokenManager.__name__ == "ZaloTokenManager"
