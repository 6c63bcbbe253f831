"""The JSON API speaks one way everywhere: JSON errors on every route, one `limit` range, 404 for unknown
targets wherever a target is named, errors naming every parameter involved, Vietnamese as UTF-8."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from monitor.config import load_config_text
from monitor.daemon import Daemon
from monitor.web.common import MAX_LIMIT
from tests.store_engines import StoreFactory


@pytest.fixture
async def daemon(silent_port: int, tmp_path: Path, stores: StoreFactory) -> AsyncIterator[Daemon]:
    """The daemon on each store engine: the API answers the same on both."""
    store = json.dumps({**stores.config(tmp_path / "store.db"), "flush_interval": "0.05s"})
    config = load_config_text(
        f"""
listen: 127.0.0.1:0
store: {store}
scheduler: {{start_jitter: 0, shutdown_grace: 1s}}
targets:
  - {{name: motcua-db, type: tcp, host: 127.0.0.1, port: {silent_port}, interval: 1s, timeout: 0.5s}}
""",
        environ={},
    )
    running = Daemon(config)
    await running.start()
    yield running
    await running.stop()


async def _get(daemon: Daemon, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{daemon.base_url}{path}") as response,
    ):
        return response.status, response.content_type, await response.read()


async def test_unknown_routes_answer_json_404(daemon: Daemon) -> None:
    """An unknown path (API or not) and a wrong method get JSON bodies, not aiohttp's plain text."""
    for path, message in (
        ("/api/v1/nope", "no such route: /api/v1/nope"),
        ("/api/v2/targets", "no such route: /api/v2/targets"),
        ("/favicon.ico", "no such route: /favicon.ico"),
    ):
        status, kind, body = await _get(daemon, path)
        assert (status, kind) == (404, "application/json")
        assert body.decode() == f'{{"error": "{message}"}}'
    status, kind, body = await _get(daemon, "/api/v1/targets", method="DELETE")
    assert (status, kind) == (405, "application/json")
    assert b"method DELETE not allowed on /api/v1/targets" in body


async def test_vietnamese_in_replies_is_utf8_not_escaped(daemon: Daemon) -> None:
    """A reply naming `Hồ-sơ` carries the UTF-8 bytes, not `\\u1ed3` escapes."""
    status, _kind, body = await _get(daemon, "/api/v1/targets/Hồ-sơ/uptime")
    assert status == 404
    assert body.decode("utf-8") == '{"error": "unknown target \'Hồ-sơ\'"}'
    status, _kind, body = await _get(daemon, "/api/v1/hồ-sơ")
    assert status == 404 and "hồ-sơ" in body.decode("utf-8") and b"\\u" not in body


async def test_incidents_of_an_unknown_target_is_404_like_uptime(daemon: Daemon) -> None:
    """`incidents?target=nope` answers 404 with the same message as `targets/nope/uptime`."""
    first = await _get(daemon, "/api/v1/incidents?target=nope")
    second = await _get(daemon, "/api/v1/targets/nope/uptime")
    assert first == second == (404, "application/json", b'{"error": "unknown target \'nope\'"}')
    status, _kind, body = await _get(daemon, "/api/v1/incidents?target=motcua-db")
    assert (status, body) == (200, b'{"incidents": []}')


@pytest.mark.parametrize(
    "route", ["/api/v1/incidents", "/api/v1/alerts", "/api/v1/dossiers", "/api/v1/overdue-during-outage"]
)
async def test_every_list_route_takes_one_limit_range(daemon: Daemon, route: str) -> None:
    """`limit` from 1 to MAX_LIMIT on every list route; outside it, the same 400 everywhere."""
    for good in (1, MAX_LIMIT):
        status, _kind, body = await _get(daemon, f"{route}?limit={good}")
        assert status == 200, body
    for bad in ("0", str(MAX_LIMIT + 1), "ten"):
        status, _kind, body = await _get(daemon, f"{route}?limit={bad}")
        assert status == 400
        assert body.decode() == f'{{"error": "limit: \'{bad}\' is not an integer from 1 to {MAX_LIMIT}"}}'


async def test_reversed_time_range_names_both_parameters(daemon: Daemon) -> None:
    """`from` after the default `to` (now): the error names both and says `to` was the default."""
    status, _kind, body = await _get(daemon, "/api/v1/targets/motcua-db/uptime?from=2030-01-01")
    assert status == 400
    error = body.decode()
    assert error.startswith('{"error": "from, to: from=2030-01-01 must be earlier than to (default: now)')
    assert "2029-12-31T17:00:00Z is not before" in error
    status, _kind, body = await _get(daemon, "/api/v1/targets/motcua-db/uptime?from=1d&to=2d")
    assert status == 400 and b"from=1d must be earlier than to=2d" in body


async def test_times_outside_1970_to_9000_are_a_400_naming_the_parameter(daemon: Daemon) -> None:
    """A duration reaching before year 1 or a time past what zones convert is a JSON 400, not a 500."""
    for path, message in (
        ("/api/v1/incidents?since=740000d", "since: '740000d' reaches before 1970"),
        ("/api/v1/incidents?since=1969-12-31", "since: '1969-12-31' is not between 1970 and 9000"),
        (
            "/api/v1/targets/motcua-db/uptime?to=9999-12-31T23:59:59-23:59",
            "to: '9999-12-31T23:59:59-23:59' is not between 1970 and 9000",
        ),
    ):
        status, kind, body = await _get(daemon, path)
        assert (status, kind) == (400, "application/json"), body
        assert json.loads(body) == {"error": message}


async def test_a_scraper_that_gives_up_mid_page_costs_one_line_not_a_traceback(
    tmp_path: Path, stores: StoreFactory, silent_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A scraper closing the connection while /metrics streams (its scrape_timeout during a busy first
    sync) is logged as one warning; aiohttp logs no traceback and the next scrape is whole."""
    store = json.dumps(stores.config(tmp_path / "store.db"))
    targets = "\n".join(
        f"  - {{name: db-{index}, type: tcp, host: 127.0.0.1, port: {silent_port}, interval: 1h,"
        " timeout: 0.5s}"
        for index in range(1500)
    )
    config = load_config_text(
        f"listen: 127.0.0.1:0\nstore: {store}\nscheduler: {{start_jitter: 0, shutdown_grace: 1s}}\n"
        f"targets:\n{targets}\n",
        environ={},
    )
    running = Daemon(config)
    await running.start()
    try:
        with capture_logs() as logs:
            for _ in range(3):
                reader, writer = await asyncio.open_connection(*running.listen_address)
                # A small receive window, never read past the headers: the page cannot fit in flight.
                writer.transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
                )
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: tthc\r\n\r\n")
                await writer.drain()
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
                writer.transport.abort()
            await asyncio.sleep(0.5)
        assert any(entry["event"] == "metrics_scrape_abandoned" for entry in logs)
        assert not [record for record in caplog.records if record.exc_info], caplog.text
        status, _, body = await _get(running, "/metrics")
        assert status == 200
        families = {family.name for family in text_string_to_metric_families(body.decode())}
        assert {"tthc_target_uptime_ratio", "tthc_replica_info"} <= families
    finally:
        await running.stop()
