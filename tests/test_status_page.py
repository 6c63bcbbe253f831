"""/status from a running daemon watching the simulator: rendered in headless Chromium at phone and
desktop widths, checked in the DOM, only 127.0.0.1 contacted; the token rule; 50 targets stay cheap."""

from __future__ import annotations

import asyncio
import re
import socket
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import yaml

from monitor.config import load_config_text
from monitor.daemon import Daemon
from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.simulator import Simulator
from monitor.simulator.catalog import UNITS
from monitor.store import ProbeResult
from tests.browser import ARTIFACTS, chromium_path, open_browser
from tests.crash_helpers import simulator_dossiers
from tests.store_engines import StoreFactory

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
TOKEN = "status-api-token-Qm81x"
OK = ProbeOutcome(success=True)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _local(day_offset: int, hour: int, minute: int = 0) -> datetime:
    """A local time `day_offset` days before today."""
    today = datetime.now(ZONE).date()
    return datetime.combine(today - timedelta(days=day_offset), clock_time(hour, minute), ZONE)


@dataclass(frozen=True, slots=True)
class PastIncident:
    target: str
    started_at: datetime
    ended_at: datetime
    reason: FailureReason


PAST_INCIDENTS = (
    PastIncident("portal", _local(3, 9, 0), _local(3, 9, 45), FailureReason.TIMEOUT),
    PastIncident("motcua-app", _local(10, 14, 0), _local(10, 16, 30), FailureReason.STATUS),
    PastIncident("portal", _local(40, 23, 30), _local(39, 0, 30), FailureReason.REFUSED),
)
# motcua-db was added to the config 60 days ago: older days have no data.
FIRST_DAY = {"portal": 89, "motcua-app": 89, "dossier-api": 89, "motcua-db": 60}


async def seed_history(
    stores: StoreFactory, path: Path, now: datetime, first_day: dict[str, int], every: timedelta
) -> None:
    """Write past probe results and incidents into the store, as an earlier daemon run would have."""
    async with stores.new(path, clock=lambda: now, flush_interval=3600) as store:
        for name, days in first_day.items():
            at = datetime.combine(now.astimezone(ZONE).date() - timedelta(days=days), clock_time(), ZONE)
            while at < now - timedelta(minutes=1):
                store.record(ProbeResult(name, at.astimezone(UTC), 0.05, OK, Health.UP))
                at += every
        for past in PAST_INCIDENTS:
            if past.target in first_day:
                incident = await store.open_incident(past.target, past.started_at, past.reason.value, "")
                await store.close_incident(incident, past.ended_at)


def _config(
    tmp_path: Path,
    stores: StoreFactory,
    sim: Simulator,
    targets: list[dict],
    *,
    public: bool,
    token: str | None,
) -> str:
    config: dict = {
        "timezone": "Asia/Ho_Chi_Minh",
        "listen": "127.0.0.1:0",
        "store": {**stores.config(tmp_path / "monitor.db"), "flush_interval": "0.2s"},
        "scheduler": {"start_jitter": 0, "shutdown_grace": "2s"},
        "logging": {"format": "json"},
        "status": {"public": public},
        "targets": targets,
        "dossiers": simulator_dossiers(sim),
    }
    if token is not None:
        config["api"] = {"token": token}
    return yaml.safe_dump(config, allow_unicode=True)


def _sim_targets(sim: Simulator) -> list[dict]:
    common = {"interval": "0.5s", "timeout": "0.5s", "failure_threshold": 1, "success_threshold": 1}
    return [
        {"name": "portal", "type": "http", "url": sim.portal_url, **common},
        {"name": "motcua-app", "type": "http", "url": sim.app_url, **common},
        {
            "name": "dossier-api",
            "type": "http",
            "url": f"{sim.api_base}/dossiers?start=0&end=1",
            "headers": {"groupId": "35402"},
            "expect": {"status": [200, 401]},
            **common,
        },
        {"name": "motcua-db", "type": "tcp", "host": "127.0.0.1", "port": sim.port, **common},
        # Nothing listens there: DOWN with an open incident while the page is shown.
        {"name": "registry-db", "type": "tcp", "host": "127.0.0.1", "port": _closed_port(), **common},
    ]


async def _poll(what: str, check, within: float = 30.0):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def running(tmp_path: Path, stores: StoreFactory) -> AsyncIterator[tuple[Daemon, Simulator]]:
    """The daemon watching the simulator, with 90 days of history already in its store (each engine)."""
    async with Simulator(seed=11, dossier_count=300, tls=False, state_dir=tmp_path / "sim") as sim:
        now = datetime.now(UTC)
        await seed_history(stores, tmp_path / "monitor.db", now, FIRST_DAY, timedelta(minutes=30))
        text = _config(tmp_path, stores, sim, _sim_targets(sim), public=True, token=TOKEN)
        daemon = Daemon(load_config_text(text, environ={}))
        await daemon.start()
        try:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with aiohttp.ClientSession(headers=auth) as session:

                async def ready() -> bool:
                    async with session.get(f"{daemon.base_url}/api/v1/targets") as response:
                        health = {t["name"]: t for t in (await response.json())["targets"]}
                    async with session.get(f"{daemon.base_url}/api/v1/units") as response:
                        units = (await response.json())["units"]
                    return (
                        all(health[name]["health"] == "up" for name in FIRST_DAY)
                        and health["registry-db"]["incident_open"]
                        and bool(units)
                    )

                await _poll("targets up, registry-db down, dossiers synced", ready)
            yield daemon, sim
        finally:
            await daemon.stop()


async def _api(daemon: Daemon, path: str) -> dict:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session, session.get(daemon.base_url + path, headers=headers) as r:
        assert r.status == 200
        return await r.json()


_DOM_SUMMARY = """(() => {
  const targets = [...document.querySelectorAll('article.target')].map(card => ({
    name: card.querySelector('h3').textContent,
    state: card.querySelector('.state').textContent,
    bars: card.querySelectorAll('.bars > .bar').length,
    none: card.querySelectorAll('.bars > .bar.none').length,
    red: card.querySelectorAll('.bars > .bar.minor, .bars > .bar.major, .bars > .bar.bad').length,
    barWidth: card.querySelector('.bars > .bar').getBoundingClientRect().width,
  }));
  const units = [...document.querySelectorAll('table.units tbody tr')].map(row =>
    [...row.children].map(cell => cell.textContent));
  return {
    targets, units,
    text: document.body.innerText,
    scripts: document.scripts.length,
    links: document.querySelectorAll('link, img, iframe, object, embed').length,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    open: [...document.querySelectorAll('.incidents li')].map(li => li.textContent),
  };
})()"""


async def test_status_page_in_a_real_browser_at_phone_and_desktop_widths(running) -> None:
    """Every target with 90 bars, open incidents, unit counts and Vietnamese labels; nothing but 127.0.0.1."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    daemon, _sim = running
    units = {u["name"]: u["states"] for u in (await _api(daemon, "/api/v1/units"))["units"]}
    assignees = {
        d["assignee"]["name"]
        for d in (await _api(daemon, "/api/v1/dossiers?limit=500"))["dossiers"]
        if d["assignee"]["name"]
    }
    officers = {officer.name for unit in UNITS for officer in unit.officers} | assignees
    url = f"{daemon.base_url}/status"
    shots = []
    async with open_browser(executable) as browser:
        for label, width, height, mobile in (("phone", 390, 844, True), ("desktop", 1366, 900, False)):
            page = await browser.new_page()
            # Public page: no token sent, and none needed.
            await page.goto(url, width=width, height=height, mobile=mobile, headers={})
            dom = await page.evaluate(_DOM_SUMMARY)
            shots.append(await page.screenshot(ARTIFACTS / f"status-{label}.png"))

            names = [t["name"] for t in dom["targets"]]
            assert names == ["portal", "motcua-app", "dossier-api", "motcua-db", "registry-db"]
            assert all(t["bars"] == 90 for t in dom["targets"]), dom["targets"]
            assert all(t["barWidth"] >= 2 for t in dom["targets"]), "bars stay visible on a phone"
            by_name = {t["name"]: t for t in dom["targets"]}
            assert by_name["motcua-db"]["none"] == 29, "days before the target was added have no data"
            assert by_name["portal"]["none"] == 0 and by_name["portal"]["red"] == 3  # 23:30-00:30 is 2 days
            assert by_name["registry-db"]["state"] == "Gián đoạn"
            assert by_name["portal"]["state"] == "Hoạt động bình thường"
            for label_text in (
                "Trạng thái hệ thống",
                "Sự cố đang diễn ra",
                "Các hệ thống",
                "100,00% hoạt động",
                "Hồ sơ sắp đến hạn và quá hạn theo đơn vị",
                "Quá hạn",
                "1 hệ thống đang gián đoạn",
            ):
                assert label_text in dom["text"], label_text
            assert len(dom["open"]) == 1 and dom["open"][0].startswith("registry-db: Không kết nối được")
            shown = {row[0]: [int(cell) for cell in row[1:]] for row in dom["units"]}
            expected = {
                name: [states.get("due_soon", 0), states.get("due_today", 0), states.get("overdue", 0)]
                for name, states in units.items()
                if states
            }
            assert shown == expected and any(sum(counts) for counts in shown.values())
            assert not [name for name in officers if name in dom["text"]], "no officer names"
            assert "127.0.0.1" not in dom["text"], "no internal addresses"
            assert dom["scripts"] == 0 and dom["links"] == 0
            assert dom["overflow"] <= 0, f"{label}: the page scrolls sideways by {dom['overflow']}px"
            # The page itself asks for nothing (a browser may still ask the same host for its favicon).
            assert [r for r in page.requests if not r.endswith("/favicon.ico")] == [url], page.requests
            assert page.foreign_requests() == []

            # Tapping (or hovering) a day opens its details without any script.
            day = _local(3, 12).date().isoformat()
            selector = f"article.target:nth-of-type(1) .bar[data-day='{day}']"
            box = await page.evaluate(
                f'(() => {{ const r = document.querySelector("{selector}").getBoundingClientRect();'
                " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
            )
            for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
                await page.send(
                    "Input.dispatchMouseEvent",
                    {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
                )
            tip = await page.evaluate(
                f'(() => {{ const t = document.querySelector("{selector} .tip");'
                " return [getComputedStyle(t).display, t.innerText]; })()"
            )
            assert tip[0] == "block", "the day's details show on hover or tap"
            assert "09:00 – 09:45: Quá thời gian phản hồi" in tip[1]
            assert "gián đoạn 45 phút" in tip[1]
            shots.append(await page.screenshot(ARTIFACTS / f"status-{label}-day-open.png"))
    print(f"status page screenshots: {', '.join(str(shot) for shot in shots)}")


async def test_status_needs_the_token_unless_public(tmp_path: Path, stores: StoreFactory) -> None:
    """status.public false: /status needs the API's bearer token; true: open to all, /api/ still closed."""
    async with Simulator(seed=3, dossier_count=20, tls=False, state_dir=tmp_path / "sim") as sim:
        for public in (False, True):
            text = _config(tmp_path, stores, sim, _sim_targets(sim)[:1], public=public, token=TOKEN)
            daemon = Daemon(load_config_text(text, environ={}))
            await daemon.start()
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"{daemon.base_url}/status") as response:
                        assert response.status == (200 if public else 401)
                        body = await response.text()
                        assert TOKEN not in body
                    headers = {"Authorization": f"Bearer {TOKEN}"}
                    async with session.get(f"{daemon.base_url}/status", headers=headers) as response:
                        assert response.status == 200
                        assert response.headers["Content-Type"].startswith("text/html")
                        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
                        assert "<h3>portal</h3>" in await response.text()
                    async with session.get(f"{daemon.base_url}/api/v1/targets") as response:
                        assert response.status == 401
            finally:
                await daemon.stop()


async def test_status_page_for_50_targets_renders_well_under_a_second(
    tmp_path: Path, stores: StoreFactory
) -> None:
    """50 targets with 90 days of history and incidents: /status answers in under a second (about 0.2 s
    on a quiet machine; the bound is loose so a loaded CI machine does not fail it)."""
    async with Simulator(seed=5, dossier_count=50, tls=False, state_dir=tmp_path / "sim") as sim:
        names = [f"dich-vu-{index:02d}" for index in range(50)]
        now = datetime.now(UTC)
        async with stores.new(tmp_path / "monitor.db", clock=lambda: now, flush_interval=3600) as store:
            for index, name in enumerate(names):
                at = now - timedelta(days=90)
                while at < now - timedelta(minutes=1):
                    store.record(ProbeResult(name, at, 0.05, OK, Health.UP))
                    at += timedelta(hours=1)
                for day in range(index % 7, 90, 7):
                    started = now - timedelta(days=day, hours=3)
                    incident = await store.open_incident(name, started, "timeout", "")
                    await store.close_incident(incident, started + timedelta(minutes=10 + index))
        targets = [
            {
                "name": name,
                "type": "tcp",
                "host": "127.0.0.1",
                "port": sim.port,
                "interval": "5s",
                "timeout": "1s",
            }
            for name in names
        ]
        text = _config(tmp_path, stores, sim, targets, public=True, token=None)
        daemon = Daemon(load_config_text(text, environ={}))
        await daemon.start()
        try:
            timings = []
            async with aiohttp.ClientSession() as session:
                for _ in range(5):
                    started = time.perf_counter()
                    async with session.get(f"{daemon.base_url}/status") as response:
                        body = await response.text()
                    timings.append(time.perf_counter() - started)
                    assert response.status == 200
        finally:
            await daemon.stop()
    assert len(re.findall(r'<article class="card target">', body)) == 50
    assert body.count('class="bar ') == 50 * 90
    median = statistics.median(timings)
    slowest = max(timings)
    print(
        f"/status with 50 targets x 90 days ({stores.engine}):"
        f" median {median * 1000:.0f} ms, max {slowest * 1000:.0f} ms"
    )
    assert median < 1.0, f"/status took {median:.3f}s for 50 targets"
