"""Fault injection: which faults are switched on, and what they do to the public site's requests.

`FaultSwitches` holds the fault list (set from code or the admin API's `/faults`, or scheduled at
start) and the middleware that applies it per request scope: `/o/`, `/dvcqg`, `/export` are `api`;
`/motcua`, `/login` are `app`; the rest is `portal`. `slow`, `error_5xx`, `maintenance` and
`html_error` act here for every handler; `truncated` and `empty` are left to the listing handlers
under `FAULTS_KEY`. `down` and the certificate faults act on the listeners (`monitor.simulator.server`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from monitor.simulator.faults import Fault, fault_from_request
from monitor.simulator.site import page
from monitor.simulator.world import World

__all__ = ["FAULTS_KEY", "MAINTENANCE_MARKER", "FaultSwitches", "scope_of"]

# The same logger as the listeners: the simulator's events read as one component in the logs.
log = structlog.get_logger("monitor.simulator.server")

MAINTENANCE_MARKER = "Hệ thống đang bảo trì"
# The faults active for the request's scope, for handlers whose reply a fault changes.
FAULTS_KEY = web.RequestKey("faults", dict)


def scope_of(path: str) -> str:
    if path.startswith(("/o/", "/dvcqg", "/export")):
        return "api"
    if path.startswith(("/motcua", "/login")):
        return "app"
    return "portal"


class FaultSwitches:
    """The simulator's faults, active and planned; `on_change` runs after every switch (listeners follow)."""

    __slots__ = ("_clock", "_faults", "_on_change")

    def __init__(
        self, faults: list[Fault], clock: Callable[[], datetime], on_change: Callable[[], Awaitable[None]]
    ) -> None:
        self._faults = faults
        self._clock = clock
        self._on_change = on_change

    def active_at(self, now: datetime) -> tuple[Fault, ...]:
        return tuple(fault for fault in self._faults if fault.active(now))

    def planned(self) -> tuple[Fault, ...]:
        return tuple(self._faults)

    def active(self, scope: str | None) -> dict[str, Fault]:
        now = self._clock()
        return {f.fault: f for f in self._faults if f.active(now) and f.covers(scope)}

    def prune(self, now: datetime) -> None:
        """Drop faults that have ended."""
        self._faults = [fault for fault in self._faults if not fault.expired(now)]

    async def add(self, fault: Fault) -> Fault:
        # One fault of a kind per scope: setting it again replaces the old one (new delay, duration).
        self._faults = [f for f in self._faults if not (f.fault == fault.fault and f.scope == fault.scope)]
        self._faults.append(fault)
        log.info("simulator_fault_set", **{k: v for k, v in fault.to_json().items() if v is not None})
        await self._on_change()
        return fault

    async def clear(self, fault: str | None = None, scope: str | None = None) -> int:
        """Clear faults (all, or those of a kind and/or scope), scheduled ones included; returns how many."""
        keep = [
            f
            for f in self._faults
            if (fault is not None and f.fault != fault) or (scope is not None and f.scope != scope)
        ]
        cleared = len(self._faults) - len(keep)
        self._faults = keep
        log.info("simulator_faults_cleared", count=cleared)
        await self._on_change()
        return cleared

    # --- the public site ---------------------------------------------------------------------------

    def middleware(self, world: World) -> Any:
        """The public site's middleware: bring `world` up to the clock, then apply the scope's faults."""

        @web.middleware
        async def apply_faults(request: web.Request, handler: Any) -> web.StreamResponse:
            world.simulate_until(self._clock())
            scope = scope_of(request.path)
            active = self.active(scope)
            if "slow" in active:
                await asyncio.sleep(active["slow"].delay.total_seconds())
            if "error_5xx" in active:
                status = active["error_5xx"].status
                return web.Response(
                    status=status,
                    text=page(
                        f"{status} Service Unavailable", f"<h1>{status}</h1><p>Service Unavailable</p>"
                    ),
                    content_type="text/html",
                    headers={"Retry-After": "60"} if status == 503 else None,
                )
            if "maintenance" in active:
                return web.Response(
                    text=page(
                        MAINTENANCE_MARKER,
                        f"<h1>{MAINTENANCE_MARKER}</h1><p>Hệ thống đang được nâng cấp, bảo trì. "
                        "Quý khách vui lòng quay lại sau. Xin cảm ơn!</p>",
                    ),
                    content_type="text/html",
                )
            if "html_error" in active:
                return web.Response(
                    text=page(
                        "Lỗi hệ thống",
                        "<h1>Đã có lỗi xảy ra</h1><p>Không thể xử lý yêu cầu. "
                        "com.liferay.portal.kernel.exception.SystemException: "
                        "java.sql.SQLRecoverableException: IO Error: Connection reset</p>",
                    ),
                    content_type="text/html",
                )
            request[FAULTS_KEY] = active
            return await handler(request)

        return apply_faults

    # --- the admin API -----------------------------------------------------------------------------

    def add_admin_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/faults", self._admin_list)
        router.add_post("/faults", self._admin_set)
        router.add_delete("/faults", self._admin_clear)

    async def _admin_list(self, request: web.Request) -> web.Response:
        now = self._clock()
        return web.json_response(
            {
                "faults": [f.to_json() for f in self._faults if f.active(now)],
                "planned": [f.to_json() for f in self._faults if not f.active(now)],
            }
        )

    async def _admin_set(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            fault = fault_from_request(data, self._clock())
        except (ValueError, TypeError) as exc:
            message = str(exc) if not isinstance(exc, json.JSONDecodeError) else "body must be json"
            return web.json_response({"error": message}, status=400)
        fault = await self.add(fault)
        return web.json_response(fault.to_json(), status=201)

    async def _admin_clear(self, request: web.Request) -> web.Response:
        cleared = await self.clear(request.query.get("fault"), request.query.get("scope"))
        return web.json_response({"cleared": cleared})
