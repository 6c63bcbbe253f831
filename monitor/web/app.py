"""The HTTP server: /metrics, /healthz, /readyz, the JSON API under /api/v1 and the /status page.

Later components add their own routes with `add_api_routes`, so the API stays one server with one
authentication rule.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from monitor.maintenance import in_maintenance, planned_maintenance
from monitor.targets import HttpTarget, TcpTarget
from monitor.web.alerts import add_routes as add_alert_routes
from monitor.web.common import json_error, json_response
from monitor.web.dossiers import add_routes as add_dossier_routes
from monitor.web.openapi import add_routes as add_openapi_routes
from monitor.web.queries import IncidentsQuery, UptimeQuery, ordered_range, read_call
from monitor.web.replies import (
    ErrorReply,
    IncidentItem,
    IncidentsReply,
    ReadyReply,
    ReloadApplied,
    ReloadFailed,
    TargetItem,
    TargetsReply,
    UptimeReply,
    reply,
)
from monitor.web.routes import Access, ApiRoute, Reply, RouteFamily, add_route
from monitor.web.services import SERVICES, WebServices
from monitor.web.status import add_routes as add_status_routes

__all__ = ["bearer_matches", "create_web_app"]

log = structlog.get_logger("monitor.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# /readyz fails when writes have waited this long (at least) without any commit.
_COMMIT_STALL_SECONDS = 30.0


def bearer_matches(header: str, token: SecretStr) -> bool:
    """Whether an Authorization header carries the bearer token. The scheme name is case-insensitive
    (RFC 7235 section 2.1), so `bearer x` and `BEARER x` are as good as `Bearer x`."""
    scheme, _space, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.get_secret_value().encode())


def _needs_token(request: web.Request) -> bool:
    """The JSON API always; the status page unless `status.public` (it shows no personal data, but an
    office decides whether citizens may see it)."""
    if request.path.startswith("/api/"):
        return True
    return request.path.rstrip("/") == "/status" and not request.app[SERVICES].config.status.public


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _needs_token(request):
        token = request.app[SERVICES].config.api.token
        if token is not None and not bearer_matches(request.headers.get("Authorization", ""), token):
            return web.json_response(
                {"error": "missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="tthc-monitor"'},
            )
    return await handler(request)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp answers unknown routes and methods in plain text; the API answers JSON everywhere."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        message = {
            404: f"no such route: {request.path}",
            405: f"method {request.method} not allowed on {request.path}",
        }.get(exc.status, exc.reason)
        headers = {key: value for key, value in exc.headers.items() if key in ("Allow", "WWW-Authenticate")}
        return json_response({"error": message}, status=exc.status, headers=headers)


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    """Ready when config, scheduler, store and every supervised task are fine; from facts, no I/O."""
    services = request.app[SERVICES]
    store = services.store
    facts = store.facts
    down = services.supervisor.down()
    settings = services.config.store
    age = facts.last_commit_age()
    # Writes waiting and nothing committed for this long: the writer is stuck even without errors.
    stall = max(_COMMIT_STALL_SECONDS, 10 * settings.flush_interval.total_seconds())
    stall = max(stall, 2 * settings.busy_timeout.total_seconds())
    checks = {
        "config_loaded": services.config is not None,
        "store_writable": await store.writable(),
        "store_committing": not (store.backlog and age is not None and age > stall),
        "store_backlog_ok": store.backlog < settings.raw_backlog_limit,
        "scheduler_running": services.scheduler.running,
        "tasks_alive": not down,
    }
    body = {
        "ready": all(checks.values()),
        "checks": checks,
        "store": {
            "backlog": store.backlog,
            "last_commit_age_seconds": None if age is None else round(age, 3),
            "failing_for_seconds": round(facts.failing_for(), 3),
        },
        "tasks_down": down,
    }
    return json_response(body, status=200 if body["ready"] else 503)


async def _metrics(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    services.metrics.store_pending_writes.set(services.store.pending_writes)
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
    await response.prepare(request)
    try:
        await response.write(generate_latest(services.metrics.registry))
        for piece in services.target_series.render():
            await response.write(piece.encode())
            # Let due probes start between pieces: a scrape of thousands of targets must not delay them.
            await asyncio.sleep(0)
        await response.write_eof()
    except ConnectionResetError:
        # The scraper gave up first (its scrape_timeout, while the loop was busy with a large first sync):
        # a fact about that scrape, not an error of the daemon's, so one line instead of aiohttp's traceback.
        log.warning(
            "metrics_scrape_abandoned",
            peer=request.remote,
            hint="the scraper closed the connection before the page was written; check its scrape_timeout",
        )
    return response


async def _targets(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    states = await services.target_states()
    now = services.now()
    items = []
    for target in services.config.targets:
        state = states.get(target.name)
        items.append(
            TargetItem(
                name=target.name,
                type=target.type,
                health=state.health if state else "unknown",
                since=state.since if state else None,
                in_maintenance=in_maintenance(target.maintenance, now, services.config.zone),
                last_probe_at=state.last_probe_at if state else None,
                last_duration_seconds=state.last_duration_seconds if state else None,
                last_success=state.last_success if state else None,
                reason=state.reason if state else None,
                detail=state.detail if state else None,
                status_code=state.status_code if state else None,
                cert_expiry=datetime.fromtimestamp(state.cert_expiry, UTC)
                if state and state.cert_expiry
                else None,
                incident_open=state.incident_open if state else False,
                incident_id=state.incident_id if state else None,
                interval_seconds=target.interval.total_seconds(),
            )
        )
    return reply(TargetsReply(targets=items))


def _configured_target(services: WebServices, name: str) -> HttpTarget | TcpTarget:
    """The configured target (every replica knows them all, whichever member probes it), or 404."""
    for target in services.config.targets:
        if target.name == name:
            return target
    raise json_error(web.HTTPNotFound, f"unknown target {name!r}")


async def _target_uptime(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    target = _configured_target(request.app[SERVICES], name)
    call = read_call(request, UptimeQuery)
    start, end = ordered_range(call.query.start, call.query.end, call.now, timedelta(days=30))
    planned = planned_maintenance([target], start, end, call.services.config.zone)
    report = await call.services.store.uptime(name, start, end, planned)
    return reply(
        UptimeReply(
            target=name,
            from_=report.start,
            to=report.end,
            uptime_percent=None if report.uptime_ratio is None else round(report.uptime_ratio * 100, 4),
            downtime_seconds=round(report.downtime_seconds, 3),
            unmonitored_seconds=round(report.unmonitored_seconds, 3),
            incidents=report.incidents,
            probes=report.probes,
            failures=report.failures,
            degraded=report.degraded,
            latency_p50_seconds=report.latency_p50,
            latency_p95_seconds=report.latency_p95,
        )
    )


async def _incidents(request: web.Request) -> web.Response:
    call = read_call(request, IncidentsQuery)
    query, now = call.query, call.now
    if query.target is not None:
        _configured_target(call.services, query.target)
    since = call.window_start(timedelta(days=7))
    incidents = (await call.services.store.incidents(since, target=query.target))[: query.limit]
    return reply(
        IncidentsReply(
            incidents=[
                IncidentItem(
                    id=incident.id,
                    target=incident.target,
                    started_at=incident.started_at,
                    ended_at=incident.ended_at,
                    duration_seconds=round(incident.duration_seconds(now), 3),
                    reason=incident.reason,
                    detail=incident.detail,
                    open=incident.ended_at is None,
                )
                for incident in incidents
            ]
        )
    )


async def _reload(request: web.Request) -> web.Response:
    """Apply the config file now, as SIGHUP does: what changed, or the config errors and nothing changed."""
    outcome = await request.app[SERVICES].reload()
    model = ReloadApplied if outcome.ok else ReloadFailed
    return reply(model(**outcome.to_json()), status=outcome.http_status)


_OPERATIONS = RouteFamily(tags=("operations",), access=Access.OPEN)
_TARGETS = RouteFamily(tags=("targets",))
_NOT_FOUND_TARGET = {404: Reply("No target of that name.", ErrorReply)}
_ROUTES = (
    _OPERATIONS.get(
        "/healthz", _healthz, "Liveness: the process answers.", Reply("`ok`.", media_type="text/plain")
    ),
    _OPERATIONS.get(
        "/readyz",
        _readyz,
        "Readiness: config loaded, store writable, scheduler running.",
        Reply("Ready.", ReadyReply),
        errors={503: Reply("Not ready: failing checks are false.", ReadyReply)},
    ),
    _OPERATIONS.get(
        "/metrics",
        _metrics,
        "Prometheus metrics (text exposition format).",
        Reply("The metrics.", media_type=CONTENT_TYPE_LATEST.split(";")[0]),
    ),
    _TARGETS.get(
        "/api/v1/targets",
        _targets,
        "Every target: health, last probe, open incident.",
        Reply("The targets.", TargetsReply),
    ),
    _TARGETS.get(
        "/api/v1/targets/{name}/uptime",
        _target_uptime,
        "One target's uptime, downtime and latency over a window (planned maintenance left out).",
        Reply("The target's uptime.", UptimeReply),
        errors=_NOT_FOUND_TARGET,
        query=UptimeQuery,
    ),
    _TARGETS.get(
        "/api/v1/incidents",
        _incidents,
        "Incidents that started since a time, newest first.",
        Reply("The incidents.", IncidentsReply),
        errors=_NOT_FOUND_TARGET,
        query=IncidentsQuery,
    ),
    ApiRoute(
        "POST",
        "/api/v1/reload",
        _reload,
        "Re-read and apply the config file, as SIGHUP does.",
        {
            200: Reply("Applied: what changed.", ReloadApplied),
            400: Reply("The daemon has no config file to read.", ReloadFailed),
            422: Reply("The config has errors; nothing changed.", ReloadFailed),
            500: Reply("Applying the valid config failed half-way (a bug; see the log).", ReloadFailed),
        },
        tags=("operations",),
    ),
)


def create_web_app(services: WebServices) -> web.Application:
    """The app with every route; handlers read `services` (the daemon) through `app[SERVICES]`."""
    app = web.Application(middlewares=[_json_errors, _auth])
    app[SERVICES] = services
    for route in _ROUTES:
        add_route(app, route)
    add_dossier_routes(app)
    add_alert_routes(app)
    add_status_routes(app)
    add_openapi_routes(app)
    return app
