"""GET /status: each target's state, 90 daily uptime bars, open incidents and dossier counts per unit.

Server-rendered HTML and CSS only (status_view.py reads, status_html.py renders): no script, no web font,
no outside host, so it works on government networks cut off from the internet, and on a phone. Whether
it needs the API's bearer token is decided by the app's auth middleware from `status.public`.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from monitor.web.routes import Access, ApiRoute, Reply, add_route
from monitor.web.services import SERVICES
from monitor.web.status_html import render_status
from monitor.web.status_view import build_status

__all__ = ["add_routes"]


async def _status(request: web.Request) -> web.Response:
    view = await build_status(request.app[SERVICES])
    # Rendering is pure work on data already read; in a thread the loop keeps its turns (the daemon's
    # switch interval is 0.5 ms), so a large page (megabytes at 1,000 targets) does not make probes late.
    html = await asyncio.to_thread(render_status, view)
    response = web.Response(
        text=html,
        content_type="text/html",
        headers={
            # The page loads nothing: no script, no font, no image, no outside host, ever.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none';"
            " form-action 'none'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
    response.enable_compression()
    return response


def add_routes(app: web.Application) -> None:
    """Register /status (the app's auth middleware decides whether it needs the bearer token)."""
    add_route(
        app,
        ApiRoute(
            "GET",
            "/status",
            _status,
            "The status page: targets, 90 daily uptime bars, open incidents, dossiers per unit.",
            {200: Reply("The page (HTML and inline CSS only).", media_type="text/html")},
            access=Access.STATUS,
            tags=("status",),
        ),
    )
