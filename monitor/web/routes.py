"""The route registry: registering a route and documenting it are one step.

Each module adds its routes with `add_route(app, ApiRoute(...))`: aiohttp gets the handler, and the app's
list of `ApiRoute`s gets method, path, summary, query model and reply models per status, from which
monitor/web/openapi.py builds `/api/v1/openapi.json`. A route cannot be served undocumented. A
`RouteFamily` writes once what a section's routes share (tags, access, the errors they all answer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from aiohttp import web
from pydantic import BaseModel

__all__ = ["ROUTES", "Access", "ApiRoute", "Reply", "RouteFamily", "add_route", "registered_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(StrEnum):
    """Who may call a route: the app's auth middleware decides by path; this documents the same rule."""

    OPEN = "open"  # /healthz, /readyz, /metrics: for probes and Prometheus on the office network
    TOKEN = "token"  # everything under /api/ when `api.token` is set
    STATUS = "status"  # /status: the token unless `status.public`


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented reply: its JSON model, or a non-JSON media type (`model` None) with a description."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One route as served and as documented."""

    method: str
    path: str
    handler: Handler
    summary: str
    replies: Mapping[int, Reply]
    query: type[BaseModel] | None = None
    access: Access = Access.TOKEN
    tags: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class RouteFamily:
    """What a section's routes have in common: tags, who may call, the error replies they all document."""

    tags: tuple[str, ...]
    access: Access = Access.TOKEN
    errors: Mapping[int, Reply] = field(default_factory=dict)

    def get(
        self,
        path: str,
        handler: Handler,
        summary: str,
        ok: Reply,
        *,
        errors: Mapping[int, Reply] | None = None,
        query: type[BaseModel] | None = None,
    ) -> ApiRoute:
        """A GET route of the family: `ok` as its 200, then its own error replies, then the family's."""
        replies = {200: ok, **(errors or {}), **self.errors}
        return ApiRoute(
            "GET", path, handler, summary, replies, query=query, access=self.access, tags=self.tags
        )


ROUTES: web.AppKey[list[ApiRoute]] = web.AppKey("routes", list)


def add_route(app: web.Application, route: ApiRoute) -> None:
    """Serve `route.handler` at `route.method route.path` and record the route for the OpenAPI document."""
    if route.method == "GET":
        app.router.add_get(route.path, route.handler)  # HEAD too, as aiohttp's add_get always did
    else:
        app.router.add_route(route.method, route.path, route.handler)
    if ROUTES not in app:
        app[ROUTES] = []
    app[ROUTES].append(route)


def registered_routes(app: web.Application) -> tuple[ApiRoute, ...]:
    return tuple(app.get(ROUTES, ()))
