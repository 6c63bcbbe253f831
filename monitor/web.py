"""The HTTP server: /metrics, /healthz, /readyz and the JSON API under /api/v1.

Later components add their own routes with `add_api_routes`, so the API stays one server with one
authentication rule.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor.durations import parse_duration
from monitor.maintenance import in_maintenance

if TYPE_CHECKING:
    from monitor.daemon import Daemon

__all__ = ["DAEMON", "ApiError", "create_web_app", "iso", "parse_time_param"]

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(web.HTTPBadRequest):
    """A 400 with a JSON body naming the offending parameter."""

    def __init__(self, message: str) -> None:
        super().__init__(text=_json_text({"error": message}), content_type="application/json")


def _json_text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def parse_time_param(request: web.Request, name: str, default: datetime) -> datetime:
    """A query parameter as an aware time: ISO 8601, or a duration meaning that long ago (`30d`)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    now = request.app[DAEMON].now()
    try:
        return now - parse_duration(raw)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(f"{name}: {raw!r} is neither an ISO 8601 time nor a duration like 30d") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=request.app[DAEMON].config.zone)
    return value


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        token = request.app[DAEMON].config.api.token
        if token is not None:
            expected = f"Bearer {token.get_secret_value()}"
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return web.json_response(
                    {"error": "missing or wrong bearer token"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="tthc-monitor"'},
                )
    return await handler(request)


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    checks = {
        "config_loaded": daemon.config is not None,
        "store_writable": await daemon.store.writable(),
        "scheduler_running": daemon.scheduler.running,
    }
    ready = all(checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON]
    daemon.metrics.store_pending_writes.set(daemon.store.pending_writes)
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
    await response.prepare(request)
    await response.write(generate_latest(daemon.metrics.registry))
    for piece in daemon.target_series.render():
        await response.write(piece.encode())
        # Let due probes start between pieces: a scrape of thousands of targets must not delay them.
        await asyncio.sleep(0)
    await response.write_eof()
    return response


async def _targets(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    scheduler = daemon.scheduler
    now = daemon.now()
    items = []
    for name, tracker in scheduler.trackers.items():
        target = scheduler.targets[name]
        outcome = tracker.last_outcome
        items.append(
            {
                "name": name,
                "type": target.type,
                "health": tracker.health.value,
                "since": iso(tracker.last_change_at),
                "in_maintenance": in_maintenance(target.maintenance, now, daemon.config.zone),
                "last_probe_at": iso(tracker.last_probe_at),
                "last_duration_seconds": round(tracker.last_duration, 6) if outcome else None,
                "last_success": outcome.success if outcome else None,
                "reason": outcome.reason.value if outcome and outcome.reason else None,
                "detail": outcome.detail if outcome else None,
                "status_code": outcome.status_code if outcome else None,
                "cert_expiry": iso(datetime.fromtimestamp(outcome.cert_expiry, UTC))
                if outcome and outcome.cert_expiry
                else None,
                "incident_open": tracker.incident_open,
                "incident_id": scheduler.open_incident_id(name),
                "interval_seconds": target.interval.total_seconds(),
            }
        )
    return web.json_response({"targets": items})


async def _target_uptime(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    if name not in daemon.scheduler.targets:
        raise web.HTTPNotFound(
            text=_json_text({"error": f"unknown target {name!r}"}), content_type="application/json"
        )
    now = daemon.now()
    start = parse_time_param(request, "from", now - timedelta(days=30))
    end = parse_time_param(request, "to", now)
    if end <= start:
        raise ApiError("to: must be later than from")
    report = await daemon.store.uptime(name, start, end)
    return web.json_response(
        {
            "target": name,
            "from": iso(report.start),
            "to": iso(report.end),
            "uptime_percent": None if report.uptime_ratio is None else round(report.uptime_ratio * 100, 4),
            "downtime_seconds": round(report.downtime_seconds, 3),
            "incidents": report.incidents,
            "probes": report.probes,
            "failures": report.failures,
            "degraded": report.degraded,
            "latency_p50_seconds": report.latency_p50,
            "latency_p95_seconds": report.latency_p95,
        }
    )


async def _incidents(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    now = daemon.now()
    since = parse_time_param(request, "since", now - timedelta(days=7))
    target = request.query.get("target") or None
    incidents = await daemon.store.incidents(since, target=target)
    return web.json_response(
        {
            "incidents": [
                {
                    "id": incident.id,
                    "target": incident.target,
                    "started_at": iso(incident.started_at),
                    "ended_at": iso(incident.ended_at),
                    "duration_seconds": round(incident.duration_seconds(now), 3),
                    "reason": incident.reason,
                    "detail": incident.detail,
                    "open": incident.ended_at is None,
                }
                for incident in incidents
            ]
        }
    )


def create_web_app(daemon: Daemon) -> web.Application:
    # Imported here: those modules build on this one's helpers (DAEMON, ApiError, iso).
    from alerts.web import add_routes as add_alert_routes
    from monitor.web_dossiers import add_routes as add_dossier_routes

    app = web.Application(middlewares=[_auth])
    app[DAEMON] = daemon
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/v1/targets", _targets)
    app.router.add_get("/api/v1/targets/{name}/uptime", _target_uptime)
    app.router.add_get("/api/v1/incidents", _incidents)
    add_dossier_routes(app)
    add_alert_routes(app)
    return app
