"""`GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every route, built from the route registry
(monitor/web/routes.py) and the query and reply models the handlers themselves validate and build with.

The document follows the running config: with `api.token` set, routes that need it declare the bearer
scheme (and a 401); /status declares it only while `status.public` is false.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

import monitor
from monitor.web.common import json_response
from monitor.web.replies import ErrorReply
from monitor.web.routes import Access, ApiRoute, Reply, add_route, registered_routes
from monitor.web.services import SERVICES

__all__ = ["OPENAPI_PATH", "add_routes", "openapi_document"]

OPENAPI_PATH = "/api/v1/openapi.json"
_REF = "#/components/schemas/{model}"
_BEARER = "bearer"


def openapi_document(routes: Iterable[ApiRoute], *, token_set: bool, status_public: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes` under the given access rules."""
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        secured = token_set and (
            route.access is Access.TOKEN or (route.access is Access.STATUS and not status_public)
        )
        replies = dict(route.replies)
        if route.query is not None:
            replies.setdefault(400, Reply("A query parameter is wrong: the error names it.", ErrorReply))
        if secured:
            replies.setdefault(401, Reply("Missing or wrong bearer token.", ErrorReply))
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _operation_id(route),
            "parameters": [*_path_parameters(route.path), *_query_parameters(route.query)],
            "responses": {
                str(status): _response(reply, schemas) for status, reply in sorted(replies.items())
            },
            "security": [{_BEARER: []}] if secured else [],
        }
        if route.tags:
            operation["tags"] = list(route.tags)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tthc-monitor",
            "version": monitor.__version__,
            "description": "Probes, incidents, dossier deadlines and alerts of a one-stop office.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {_BEARER: {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation_id(route: ApiRoute) -> str:
    words = [part.strip("{}") for part in route.path.split("/") if part and part not in ("api", "v1")]
    return "_".join([route.method.lower(), *words]).replace("-", "_").replace(".", "_")


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]


def _query_parameters(model: type[BaseModel] | None) -> list[dict[str, Any]]:
    if model is None:
        return []
    properties = model.model_json_schema(ref_template=_REF)["properties"]
    parameters = []
    for name, field in model.model_fields.items():
        shown = field.alias or name
        schema = _without_null(properties[shown])
        parameter: dict[str, Any] = {"name": shown, "in": "query", "required": field.is_required()}
        description = schema.pop("description", None) or field.description
        if description:
            parameter["description"] = description
        parameter["schema"] = schema
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value, never JSON null: `anyOf [X, null]` becomes X."""
    options = schema.get("anyOf")
    if options is None:
        return dict(schema)
    kept = [option for option in options if option != {"type": "null"}]
    rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    if schema.get("default") is not None:
        rest["default"] = schema["default"]
    return {**kept[0], **rest} if len(kept) == 1 else {"anyOf": kept, **rest}


def _response(reply: Reply, schemas: dict[str, Any]) -> dict[str, Any]:
    if reply.model is None:
        schema: dict[str, Any] = {"type": "object" if reply.media_type == "application/json" else "string"}
    else:
        found = reply.model.model_json_schema(ref_template=_REF, mode="serialization")
        schemas.update(found.pop("$defs", {}))
        schemas[reply.model.__name__] = found
        schema = {"$ref": _REF.format(model=reply.model.__name__)}
    return {"description": reply.description, "content": {reply.media_type: {"schema": schema}}}


async def _openapi(request: web.Request) -> web.Response:
    config = request.app[SERVICES].config
    document = openapi_document(
        registered_routes(request.app),
        token_set=config.api.token is not None,
        status_public=config.status.public,
    )
    return json_response(document)


def add_routes(app: web.Application) -> None:
    """Serve the document; it lists itself too, as a route that answers JSON."""
    add_route(
        app,
        ApiRoute(
            "GET",
            OPENAPI_PATH,
            _openapi,
            "This document: every route, parameter and reply (OpenAPI 3.1).",
            {200: Reply("The OpenAPI 3.1 document.")},
            tags=("meta",),
        ),
    )
