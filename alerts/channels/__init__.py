"""Alert channels: config models, the `CHANNELS` registry and `build_channels`.

The lead wires these up with::

    register_union_tags(*CHANNEL_TYPES)          # hide union tags in config error paths
    channels: list[ChannelConfig] = ...           # a field of the main Config
    deps = ChannelDeps(kv=store)                  # shared transport + Zalo token managers
    by_name = build_channels(config.channels, deps)
    ...
    for channel in by_name.values(): await channel.close()
    await deps.aclose()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated

from pydantic import Field

from alerts.channels.base import (
    BaseChannel,
    Channel,
    ChannelConfigBase,
    DeliveryReceipt,
    KeyValueStore,
    OutgoingMessage,
    normalize_phone,
)
from alerts.channels.deps import ChannelDeps
from alerts.channels.log import LogChannel, LogConfig
from alerts.channels.sms_esms import EsmsChannel, EsmsConfig
from alerts.channels.sms_http import HttpSmsChannel, HttpSmsConfig
from alerts.channels.sms_speedsms import SpeedSmsChannel, SpeedSmsConfig
from alerts.channels.webhook import WebhookChannel, WebhookConfig
from alerts.channels.zalo_oa import ZaloOaChannel, ZaloOaConfig
from alerts.channels.zalo_token import ZaloTokenManager
from alerts.channels.zalo_zns import ZaloZnsChannel, ZaloZnsConfig

__all__ = [
    "CHANNELS",
    "CHANNEL_TYPES",
    "Channel",
    "ChannelConfig",
    "ChannelDeps",
    "ChannelFactory",
    "DeliveryReceipt",
    "EsmsConfig",
    "HttpSmsConfig",
    "KeyValueStore",
    "LogConfig",
    "OutgoingMessage",
    "SpeedSmsConfig",
    "WebhookConfig",
    "ZaloOaConfig",
    "ZaloTokenManager",
    "ZaloZnsConfig",
    "build_channels",
    "create_channel",
    "normalize_phone",
]

ChannelConfig = Annotated[
    ZaloZnsConfig | ZaloOaConfig | EsmsConfig | SpeedSmsConfig | HttpSmsConfig | WebhookConfig | LogConfig,
    Field(discriminator="type"),
]

ChannelFactory = Callable[[ChannelConfigBase, ChannelDeps], BaseChannel]

# type name → factory(config, deps) -> Channel.
CHANNELS: dict[str, ChannelFactory] = {
    "zalo_zns": ZaloZnsChannel,
    "zalo_oa": ZaloOaChannel,
    "sms_esms": EsmsChannel,
    "sms_speedsms": SpeedSmsChannel,
    "sms_http": HttpSmsChannel,
    "webhook": WebhookChannel,
    "log": LogChannel,
}  # type: ignore[dict-item]

CHANNEL_TYPES: tuple[str, ...] = tuple(CHANNELS)


def create_channel(config: ChannelConfigBase, deps: ChannelDeps) -> BaseChannel:
    """One channel from its config (its `type` field picks the factory)."""
    kind = getattr(config, "type", None)
    factory = CHANNELS.get(str(kind))
    if factory is None:
        raise ValueError(f"unknown channel type {kind!r}")
    return factory(config, deps)


def build_channels(configs: Iterable[ChannelConfigBase], deps: ChannelDeps) -> dict[str, BaseChannel]:
    """Every configured channel by name; ValueError on a duplicate name."""
    channels: dict[str, BaseChannel] = {}
    for config in configs:
        if config.name in channels:
            raise ValueError(f"duplicate channel name {config.name!r}")
        channels[config.name] = create_channel(config, deps)
    return channels
