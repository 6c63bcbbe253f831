"""`/api/v1/openapi.json` describes every served route, follows the auth config, and schemathesis, run
against the demo (daemon and simulator on loopback), finds no 5xx, no reply off its schema, no wrong
content type, no undocumented status, no route that ignores the token it declares."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import jsonschema
from aiohttp import web

from monitor.web import alerts, dossiers, openapi, status
from monitor.web.app import create_web_app
from monitor.web.openapi import OPENAPI_PATH, openapi_document
from monitor.web.routes import registered_routes
from tests.api_stack import TOKEN, DemoApi, demo_api

# Per operation and phase: enough to hit every parameter with good and bad values, well under a minute.
MAX_EXAMPLES = 25
# The three the API promises, plus: every status returned is documented, and a route declaring the bearer
# scheme refuses a request without it.
CHECKS = (
    "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance,"
    "ignored_auth"
)


def _served(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path:
            routes.add((route.method.lower(), path))
    return routes


async def _get_json(api: DemoApi, path: str, headers: dict[str, str]) -> tuple[int, str, object]:
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{api.base_url}{path}") as response,
    ):
        return response.status, response.content_type, await response.json()


async def test_the_document_lists_every_served_route_and_only_those(tmp_path: Path) -> None:
    """Every route aiohttp serves is in the document with its method, and nothing else is."""
    async with demo_api(tmp_path) as api:
        status, kind, document = await _get_json(api, OPENAPI_PATH, api.headers)
        app = create_web_app(api.daemon)
    assert (status, kind) == (200, "application/json")
    assert isinstance(document, dict) and document["openapi"] == "3.1.0"
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == _served(app)
    assert {"/healthz", "/readyz", "/metrics", "/status", "/api/v1/reload", OPENAPI_PATH} <= {
        path for _method, path in documented
    }
    kinds = {
        path: next(iter(item.values()))["responses"]["200"]["content"]
        for path, item in document["paths"].items()
    }
    assert set(kinds["/metrics"]) == {"text/plain"}
    assert set(kinds["/status"]) == {"text/html"}
    assert set(kinds["/healthz"]) == {"text/plain"}


async def test_the_document_needs_the_token_and_declares_the_bearer_scheme(tmp_path: Path) -> None:
    """Without the token the document is a JSON 401; with it, every /api route and /status need bearer."""
    async with demo_api(tmp_path) as api:
        status, kind, body = await _get_json(api, OPENAPI_PATH, {})
        assert (status, kind, body) == (401, "application/json", {"error": "missing or wrong bearer token"})
        _status, _kind, document = await _get_json(api, OPENAPI_PATH, api.headers)
    assert isinstance(document, dict)
    assert document["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, item in document["paths"].items():
        for operation in item.values():
            secured = operation["security"] == [{"bearer": []}]
            assert secured == (path.startswith("/api/") or path == "/status"), path
            assert ("401" in operation["responses"]) == secured, path


def test_status_needs_no_token_in_the_document_when_public_and_nothing_does_without_a_token() -> None:
    """`status.public` drops bearer from /status only; with no `api.token`, no route declares it."""
    app = web.Application()
    for module in (alerts, dossiers, openapi, status):
        module.add_routes(app)
    routes = registered_routes(app)
    public = openapi_document(routes, token_set=True, status_public=True)["paths"]
    assert public["/status"]["get"]["security"] == []
    assert public["/api/v1/dossiers"]["get"]["security"] == [{"bearer": []}]
    open_api = openapi_document(routes, token_set=False, status_public=False)["paths"]
    assert all(op["security"] == [] for item in open_api.values() for op in item.values())


async def test_real_replies_match_their_schemas(tmp_path: Path) -> None:
    """Each GET route's real reply on the demo validates against the schema the document gives it."""
    async with demo_api(tmp_path) as api:
        _status, _kind, document = await _get_json(api, OPENAPI_PATH, api.headers)
        assert isinstance(document, dict)
        listed: object = {"dossiers": []}
        for _ in range(50):  # the first dossier sync lands within seconds
            _status, _kind, listed = await _get_json(api, "/api/v1/dossiers?limit=3", api.headers)
            if isinstance(listed, dict) and listed["dossiers"]:
                break
            await asyncio.sleep(0.2)
        assert isinstance(listed, dict) and listed["dossiers"], "the demo synced no dossier"
        code = listed["dossiers"][0]["code"]
        routes = {
            "/api/v1/targets": "/api/v1/targets",
            "/api/v1/incidents": "/api/v1/incidents",
            "/api/v1/units": "/api/v1/units",
            "/api/v1/dossiers?limit=3": "/api/v1/dossiers",
            f"/api/v1/dossiers/{code}": "/api/v1/dossiers/{code}",
            "/api/v1/alerts": "/api/v1/alerts",
            "/api/v1/overdue-during-outage": "/api/v1/overdue-during-outage",
            "/api/v1/targets/portal/uptime?from=1h": "/api/v1/targets/{name}/uptime",
            "/readyz": "/readyz",
        }
        for path, template in routes.items():
            status, kind, body = await _get_json(api, path, api.headers)
            assert (status, kind) == (200, "application/json"), (path, body)
            content = document["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]
            jsonschema.validate(body, {**content["schema"], "components": document["components"]})


async def test_schemathesis_finds_no_failure_on_the_demo(tmp_path: Path) -> None:
    """`schemathesis run` (examples, coverage, fuzzing, stateful; good and bad inputs) finds nothing."""
    async with demo_api(tmp_path / "demo") as api:
        work = tmp_path / "schemathesis"
        work.mkdir()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{api.base_url}{OPENAPI_PATH}",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "20261201",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=work,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
        )
        output, _ = await asyncio.wait_for(process.communicate(), 90)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert "No issues found" in text, text[-3000:]
