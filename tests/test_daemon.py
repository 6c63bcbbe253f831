"""The daemon end to end in-process: real probes against loopback servers, a real store on each engine
(SQLite file, PostgreSQL schema), /metrics scraped and checked by promtool, the JSON API, reload and
graceful shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from monitor.config import Config, load_config_text
from monitor.daemon import Daemon
from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.store import ProbeResult
from monitor.store.open import store_from_config
from tests.promtool import assert_promtool_accepts
from tests.store_engines import StoreFactory


class Backend:
    """A loopback web server whose health the test switches."""

    def __init__(self) -> None:
        self.status = 200
        self.body = "Cổng Dịch vụ công tỉnh Đồng Tháp"
        self.delay = 0.0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, _request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(text=self.body, status=self.status, content_type="text/html")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}/"

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    server = Backend()
    await server.start()
    yield server
    await server.stop()


def _config_text(backend: Backend, tmp_path: Path, stores: StoreFactory, token: str = "") -> str:
    api = f"api: {{token: {token}}}\n" if token else ""
    store = json.dumps({**stores.config(tmp_path / "store.db"), "flush_interval": "0.05s"})
    return f"""
listen: 127.0.0.1:0
{api}store: {store}
scheduler: {{start_jitter: 0, shutdown_grace: 2s}}
logging: {{format: json}}
targets:
  - name: portal
    type: http
    url: http://127.0.0.1:{backend.port}/
    interval: 0.1s
    timeout: 0.1s
    failure_threshold: 2
    success_threshold: 2
    expect: {{body_contains: ["Dịch vụ công"], body_not_contains: ["bảo trì"]}}
  - name: portal-tcp
    type: tcp
    host: 127.0.0.1
    port: {backend.port}
    interval: 0.1s
    timeout: 0.1s
"""


@pytest.fixture
async def daemon(backend: Backend, tmp_path: Path, stores: StoreFactory) -> AsyncIterator[Daemon]:
    config = load_config_text(_config_text(backend, tmp_path, stores), environ={})
    running = Daemon(config)
    await running.start()
    yield running
    await running.stop()


async def _get_json(url: str, **kwargs: object) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, await response.json()


async def _wait_for(predicate, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _health(daemon: Daemon, name: str) -> str:
    _status, body = await _get_json(f"{daemon.base_url}/api/v1/targets")
    return next(item["health"] for item in body["targets"] if item["name"] == name)


async def test_target_goes_down_and_recovers_with_one_incident(daemon: Daemon, backend: Backend) -> None:
    """UP, then a maintenance page behind 200 makes it DOWN with one incident, then it recovers."""
    await _wait_for(lambda: _is(daemon, "portal", "up"))
    backend.body = "Hệ thống đang bảo trì"
    await _wait_for(lambda: _is(daemon, "portal", "down"))
    backend.body = "Cổng Dịch vụ công tỉnh Đồng Tháp"
    await _wait_for(lambda: _is(daemon, "portal", "up"))
    await daemon.store.flush()
    status, body = await _get_json(f"{daemon.base_url}/api/v1/incidents?since=1h")
    assert status == 200
    incidents = [item for item in body["incidents"] if item["target"] == "portal"]
    assert len(incidents) == 1
    assert incidents[0]["reason"] == "body_mismatch" and not incidents[0]["open"]
    assert incidents[0]["duration_seconds"] > 0
    status, uptime = await _get_json(f"{daemon.base_url}/api/v1/targets/portal/uptime?from=1h")
    assert status == 200 and uptime["incidents"] == 1 and 0 < uptime["uptime_percent"] < 100


async def test_down_health_left_without_an_open_incident_opens_none(
    backend: Backend, tmp_path: Path, stores: StoreFactory
) -> None:
    """A crash after an incident's close committed but before the UP health flushed opens no new incident."""
    config = load_config_text(_config_text(backend, tmp_path, stores), environ={})
    async with store_from_config(config.store) as store:
        at = datetime.now(UTC)
        failed = ProbeOutcome(success=False, reason=FailureReason.TIMEOUT)
        incident = await store.open_incident("portal", at - timedelta(seconds=5), "timeout", "")
        store.record(ProbeResult("portal", at, 0.1, failed, Health.DOWN, changed=True))
        await store.flush()
        await store.close_incident(incident, at)
    assert (await _latest_health(config))["portal"] is Health.DOWN
    running = Daemon(config)
    await running.start()
    try:
        await _wait_for(lambda: _is(running, "portal", "up"))
        await running.store.flush()
        incidents = await running.store.incidents(datetime.now(UTC) - timedelta(hours=1), target="portal")
        assert [item.id for item in incidents] == [incident]
    finally:
        await running.stop()


async def _latest_health(config: Config) -> dict[str, Health]:
    async with store_from_config(config.store) as store:
        return await store.latest_health()


async def _is(daemon: Daemon, name: str, health: str) -> bool:
    return await _health(daemon, name) == health


async def test_metrics_pass_promtool(daemon: Daemon) -> None:
    """/metrics carries the blackbox-compatible and tthc series and passes `promtool check metrics`."""
    await _wait_for(lambda: _is(daemon, "portal", "up"))
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.base_url}/metrics") as response:
        text = await response.text()
    for series in (
        'probe_success{target="portal"} 1.0',
        'probe_http_status_code{target="portal"} 200.0',
        'probe_http_duration_seconds{target="portal",phase="connect"}',
        'tthc_target_up{target="portal-tcp"} 1.0',
        'tthc_probes_total{target="portal",result="success"}',
        "tthc_probe_lateness_seconds_bucket",
        "tthc_config_last_reload_successful 1.0",
    ):
        assert series in text, series
    await assert_promtool_accepts(text)


async def test_health_and_readiness(daemon: Daemon) -> None:
    """/healthz answers, /readyz reports config, store, scheduler and supervised tasks ready."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{daemon.base_url}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{daemon.base_url}/readyz") as response:
            body = await response.json()
            assert response.status == 200
            assert body["checks"] == {
                "config_loaded": True,
                "store_writable": True,
                "store_committing": True,
                "store_backlog_ok": True,
                "scheduler_running": True,
                "tasks_alive": True,
            }
            assert body["tasks_down"] == {}


async def test_api_token_is_required_when_configured(
    backend: Backend, tmp_path: Path, stores: StoreFactory
) -> None:
    """With api.token set, /api/v1 needs the bearer token, /metrics stays open, and the token never leaks."""
    token = "api-token-6f1d2c"
    running = Daemon(load_config_text(_config_text(backend, tmp_path, stores, token), environ={}))
    await running.start()
    try:
        status, _body = await _get_json(f"{running.base_url}/api/v1/targets")
        assert status == 401
        status, body = await _get_json(
            f"{running.base_url}/api/v1/targets", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200 and {item["name"] for item in body["targets"]} == {"portal", "portal-tcp"}
        async with aiohttp.ClientSession() as session, session.get(f"{running.base_url}/metrics") as response:
            assert response.status == 200
            assert token not in await response.text()
    finally:
        await running.stop()


async def test_bad_query_parameter_is_a_precise_400(daemon: Daemon) -> None:
    """A malformed time parameter gets a 400 naming the parameter."""
    status, body = await _get_json(f"{daemon.base_url}/api/v1/incidents?since=yesterday")
    assert status == 400
    assert body["error"].startswith("since: 'yesterday'")


async def test_reload_keeps_old_config_when_new_is_invalid(
    backend: Backend, tmp_path: Path, stores: StoreFactory
) -> None:
    """SIGHUP-style reload: an invalid file keeps the old targets and sets the reload gauge to 0."""
    path = tmp_path / "config.yaml"
    path.write_text(_config_text(backend, tmp_path, stores))
    from monitor.config import load_config

    running = Daemon(load_config(path), config_path=path)
    await running.start()
    try:
        path.write_text("targets: [{name: broken, type: http}]")
        assert (await running.reload()).ok is False
        assert set(running.scheduler.targets) == {"portal", "portal-tcp"}
        assert running.metrics.config_reload_successful._value.get() == 0
        path.write_text(_config_text(backend, tmp_path, stores).replace("name: portal-tcp", "name: db"))
        assert (await running.reload()).ok is True
        assert set(running.scheduler.targets) == {"portal", "db"}
        async with aiohttp.ClientSession() as session, session.get(f"{running.base_url}/metrics") as response:
            text = await response.text()
        assert 'target="portal-tcp"' not in text
        assert "tthc_config_last_reload_successful 1.0" in text
    finally:
        await running.stop()


async def test_graceful_shutdown_waits_for_in_flight_probe(
    backend: Backend, tmp_path: Path, stores: StoreFactory
) -> None:
    """stop() lets an in-flight probe finish within the grace period and flushes its result."""
    backend.delay = 0.3
    text = (
        _config_text(backend, tmp_path, stores)
        .replace("timeout: 0.1s", "timeout: 1s")
        .replace("interval: 0.1s", "interval: 1s")
    )
    running = Daemon(load_config_text(text, environ={}))
    await running.start()
    await asyncio.sleep(0.1)
    assert running.scheduler.in_flight >= 1
    await running.stop()
    tracker = running.scheduler.trackers["portal"]
    assert tracker.last_outcome is not None and tracker.last_outcome.success
