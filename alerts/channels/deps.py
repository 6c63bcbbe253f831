"""What channel factories get besides their config: the shared transport, store, clock, Zalo tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alerts.channels.base import KeyValueStore
from alerts.channels.zalo_token import ZaloTokenManager
from alerts.transport import AiohttpTransport, Transport

__all__ = ["ChannelDeps"]


@dataclass(slots=True)
class ChannelDeps:
    """What channel factories get besides their config.

    `transport` defaults to one shared AiohttpTransport created on first use and closed by
    `aclose()`; `kv` is required by Zalo channels (rotated refresh tokens); `clock` gives epoch
    seconds; Zalo channels of the same app_id share one token manager through `token_managers`.
    """

    transport: Transport | None = None
    kv: KeyValueStore | None = None
    clock: Callable[[], float] = time.time
    token_managers: dict[str, ZaloTokenManager] = field(default_factory=dict)
    _owned_transport: bool = False

    def get_transport(self) -> Transport:
        if self.transport is None:
            self.transport = AiohttpTransport()
            self._owned_transport = True
        return self.transport

    async def aclose(self) -> None:
        if self._owned_transport and self.transport is not None:
            await self.transport.close()
            self.transport = None
            self._owned_transport = False
