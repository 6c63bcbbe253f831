"""What every alert channel shares: the message and receipt types, the `Channel` protocol, phone
normalisation, common config fields, and `BaseChannel` (concurrency limit, rate limit, error naming).

Contract for the outbox built on top:

* `await channel.send(message)` returns a `DeliveryReceipt` or raises an `alerts.errors.ChannelError`
  subclass (never anything else); the class says whether to retry, fall back or stop.
* `message.alert_id` is the idempotency key: a channel passes it to the gateway when the gateway can
  de-duplicate (eSMS RequestId, ZNS tracking_id, webhook header), so resending after a crash or a
  `GatewayTimeout` with the same id is safe there.
* `await channel.close()` releases what the channel owns; the shared transport in `ChannelDeps`
  (alerts/channels/deps.py) is closed by `ChannelDeps.aclose()`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field, field_validator

from alerts.errors import AlertError, ChannelError, ContentRejected, GatewayUnavailable, RateLimited
from alerts.text import count_segments, fit_segments, is_gsm7, unaccent
from alerts.transport import Transport, TransportResponse
from monitor.configtypes import PositiveDuration, StrictModel

__all__ = [
    "MAX_ALERT_ID_LENGTH",
    "BaseChannel",
    "Channel",
    "ChannelConfigBase",
    "ChannelResources",
    "DeliveryReceipt",
    "KeyValueStore",
    "OutgoingMessage",
    "RateLimiter",
    "SmsConfigBase",
    "SmsText",
    "normalize_phone",
    "parse_retry_after",
]

# eSMS accepts RequestId up to 50 characters; the same id goes to every gateway.
MAX_ALERT_ID_LENGTH = 50


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One rendered alert for one person on one channel.

    `phone` is normalised (`84xxxxxxxxx`, see `normalize_phone`) or None; `keep` lists substrings
    (dossier code, due time) that SMS shortening must never cut; `template_params` are the values a
    ZNS template may use (see `ZaloZnsConfig.templates`).
    """

    alert_id: str
    kind: str
    person_id: str
    text: str
    phone: str | None = None
    zalo_user_id: str | None = None
    template_params: Mapping[str, str] = field(default_factory=dict)
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.alert_id or len(self.alert_id) > MAX_ALERT_ID_LENGTH:
            raise ValueError(f"alert_id must be 1 to {MAX_ALERT_ID_LENGTH} characters")
        object.__setattr__(self, "template_params", MappingProxyType(dict(self.template_params)))
        object.__setattr__(self, "keep", tuple(self.keep))

    def __repr__(self) -> str:
        # The phone number and the text are personal data: keep them out of logs and tracebacks.
        return (
            f"OutgoingMessage(alert_id={self.alert_id!r}, kind={self.kind!r}, person_id={self.person_id!r})"
        )


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """The gateway accepted the message. `duplicate` = it had already accepted this alert_id before."""

    channel: str
    provider_message_id: str | None
    segments: int = 1
    cost_units: int = 1
    duplicate: bool = False


@runtime_checkable
class Channel(Protocol):
    """An alert channel instance; see the module docstring for the contract."""

    name: str
    type: str

    async def send(self, message: OutgoingMessage) -> DeliveryReceipt: ...

    async def close(self) -> None: ...


class KeyValueStore(Protocol):
    """Durable small values (the store provides it); `set_value` returns once the value is on disk."""

    async def get_value(self, key: str) -> str | None: ...

    async def set_value(self, key: str, value: str) -> None: ...


# Vietnamese mobile numbers: 0 + 9 digits, the first of them 3, 5, 7, 8 or 9 (Viettel 03x, Vinaphone
# 08x, MobiFone 07x, Vietnamobile 05x, and the older 09x).
_PHONE_SEPARATORS = re.compile(r"[\s.\-()]")
_MOBILE = re.compile(r"^0[35789]\d{8}$")


def normalize_phone(text: str, *, reveal: bool = False) -> str:
    """`0912 345 678`, `+84912345678`, `84.912.345.678` → `84912345678`; ValueError if not a VN mobile.

    The error shows the number shortened (`091…678`), as it may be logged; `reveal` shows it as written,
    for config errors, where it is the operator's own input.
    """
    compact = _PHONE_SEPARATORS.sub("", str(text))
    if not compact:
        raise ValueError("phone number is empty")
    if compact.startswith("+84"):
        national = "0" + compact[3:]
    elif compact.startswith("84") and len(compact) == 11:
        national = "0" + compact[2:]
    else:
        national = compact
    shown = repr(str(text).strip()) if reveal else _shown(text)
    if not national.isdigit():
        raise ValueError(f"phone {shown} must contain only digits, spaces, dots or a leading +84")
    if not national.startswith("0") or len(national) != 10:
        raise ValueError(f"phone {shown} must have 10 digits starting with 0 (or +84 and 9 digits)")
    if not _MOBILE.match(national):
        raise ValueError(f"phone {shown} is not a vietnamese mobile number (03, 05, 07, 08, 09)")
    return "84" + national[1:]


def _shown(text: str) -> str:
    compact = str(text).strip()
    return repr(compact if len(compact) <= 6 else compact[:3] + "…" + compact[-3:])


_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class ChannelConfigBase(StrictModel):
    """Fields common to every channel type."""

    name: str
    # At most this many sends in flight on this channel.
    concurrency: int = Field(default=4, ge=1, le=256)
    # Sustained sends per second (a token bucket with a burst of max(1, rate)); None = no limit.
    rate_per_second: float | None = Field(default=None, gt=0)
    timeout: PositiveDuration = timedelta(seconds=10)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _CHANNEL_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid channel name (letters, digits, '_', '.', '-')")
        return value


class SmsConfigBase(ChannelConfigBase):
    """Fields common to the SMS channel types."""

    # Strip Vietnamese diacritics so the message is GSM-7: 160 characters per SMS instead of 70.
    unaccented: bool = True
    # Longer texts are shortened (keeping the dossier code and due time) to at most this many parts.
    max_segments: int = Field(default=2, ge=1, le=10)


@dataclass(frozen=True, slots=True)
class SmsText:
    """The text an SMS channel actually sends, with what it costs."""

    content: str
    segments: int
    unicode: bool

    @classmethod
    def prepare(cls, message: OutgoingMessage, config: SmsConfigBase) -> SmsText:
        """Unaccent (if configured) and fit to `max_segments`; ContentRejected if it cannot fit."""
        text, keep = message.text, message.keep
        if config.unaccented:
            text, keep = unaccent(text), tuple(unaccent(item) for item in keep)
        try:
            content = fit_segments(text, config.max_segments, keep)
        except ValueError as exc:
            raise ContentRejected(f"alert text does not fit in {config.max_segments} sms") from exc
        return cls(content, count_segments(content), not is_gsm7(content))


class RateLimiter:
    """A token bucket: `rate` tokens per second, at most `burst` saved up. Waiters are served in order."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be greater than zero")
        self.rate = rate
        self.burst = max(1.0, rate) if burst is None else burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await self._sleep((1 - self._tokens) / self.rate)


class ChannelResources(Protocol):
    """What every channel takes from its `ChannelDeps`: the shared transport and the clock.

    A protocol rather than `ChannelDeps` itself (alerts/channels/deps.py) because that one names the Zalo
    token manager, which builds on this module.
    """

    clock: Callable[[], float]

    def get_transport(self) -> Transport: ...


def parse_retry_after(value: str | None, default: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; an HTTP date falls back to `default`)."""
    if value is None:
        return default
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return default


class BaseChannel:
    """Concurrency limit, rate limit and error translation around a subclass's `_deliver`.

    Subclasses set `type` and implement `_deliver(message) -> DeliveryReceipt`, raising
    `alerts.errors` classes; anything else escaping is a bug and becomes GatewayUnavailable here so the
    outbox's contract holds.
    """

    type: ClassVar[str] = ""

    def __init__(self, config: ChannelConfigBase, deps: ChannelResources) -> None:
        self.config = config
        self.name = config.name
        self.deps = deps
        self.transport = deps.get_transport()
        self.clock = deps.clock
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._limiter = RateLimiter(config.rate_per_second) if config.rate_per_second else None
        self.sent = 0
        self.failed = 0

    @property
    def timeout(self) -> float:
        return self.config.timeout.total_seconds()

    @property
    def healthy(self) -> bool:
        return True

    async def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        async with self._semaphore:
            if self._limiter is not None:
                await self._limiter.acquire()
            try:
                receipt = await self._deliver(message)
            except ChannelError as exc:
                self.failed += 1
                if not exc.channel:
                    exc.channel = self.name
                raise
            except AlertError as exc:
                self.failed += 1
                raise GatewayUnavailable(str(exc), channel=self.name) from exc
            except Exception as exc:
                self.failed += 1
                raise GatewayUnavailable(f"unexpected {type(exc).__name__}", channel=self.name) from exc
            self.sent += 1
            return receipt

    async def _deliver(self, message: OutgoingMessage) -> DeliveryReceipt:
        raise TypeError(f"{type(self).__name__} must implement _deliver")

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # Shared reply handling: the HTTP-level answers every gateway gives the same meaning.
    def check_http(self, response: TransportResponse) -> None:
        if response.status == 429:
            raise RateLimited(
                "rate limited by the gateway",
                channel=self.name,
                code=429,
                retry_after=parse_retry_after(response.header("Retry-After")),
            )
        if response.status >= 500:
            raise GatewayUnavailable(
                f"gateway error http {response.status}",
                channel=self.name,
                code=response.status,
                retry_after=parse_retry_after(response.header("Retry-After")),
            )

    def reply_json(self, response: TransportResponse) -> dict[str, Any]:
        try:
            value = response.json()
        except ValueError as exc:
            raise GatewayUnavailable(f"unreadable reply (http {response.status})", channel=self.name) from exc
        if not isinstance(value, dict):
            raise GatewayUnavailable(f"unexpected reply shape (http {response.status})", channel=self.name)
        return value
