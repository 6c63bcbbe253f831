"""Admission and fairness of the scheduler: hanging targets hold only their own share of the slots, the
healthy ones keep their interval, and an over-committed config is reported (log and gauge)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from monitor.config import load_config, load_config_text
from monitor.daemon import Daemon
from monitor.probe_slots import ProbeSlots
from monitor.scheduler import scheduler_saturation


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A loopback port that listens but never accepts: connections queue in the backlog, then hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


class Healthy:
    """A loopback web server answering at once; remembers when each probe arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.port = 0

    async def handle(self, _request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        return web.Response(text="Cổng Dịch vụ công")


@pytest.fixture
async def healthy() -> AsyncIterator[Healthy]:
    server = Healthy()
    app = web.Application()
    app.router.add_get("/", server.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server.port = runner.addresses[0][1]
    yield server
    await runner.cleanup()


def _config(tmp_path: Path, blackhole: int, healthy: int, hanging: int) -> str:
    targets = [
        f"  - {{name: hang-{index:03d}, type: http, url: 'http://127.0.0.1:{blackhole}/', "
        "interval: 2s, timeout: 1s}"
        for index in range(hanging)
    ]
    targets.append(
        f"  - {{name: portal, type: http, url: 'http://127.0.0.1:{healthy}/', interval: 2s, timeout: 1s}}"
    )
    return (
        "listen: 127.0.0.1:0\n"
        f"store: {{path: {tmp_path / 'store.db'}}}\n"
        "scheduler: {max_concurrency: 32, shutdown_grace: 0.1s}\n"
        "targets:\n" + "\n".join(targets) + "\n"
    )


@pytest.mark.slow
# Without parking, the first round runs 200 not-yet-known targets for 1 s each on 32 slots (6.25 s)
# before they are known to be slow: the check starts after that.
@pytest.mark.parametrize(
    ("parked_limit", "warm_up"), [(None, 5.0), (0, 9.0)], ids=["parking", "slow-share-only"]
)
async def test_hanging_targets_do_not_starve_a_healthy_one(
    tmp_path: Path, blackhole: int, healthy: Healthy, parked_limit: int | None, warm_up: float
) -> None:
    """200 targets hanging until their 1 s timeout (interval 2 s, 32 slots): the healthy target is still
    probed every 2 s, with hanging probes parked or (parking full) sharing half the slots, and the
    over-commitment is logged and exported."""
    config = load_config_text(_config(tmp_path, blackhole, healthy.port, 200), environ={})
    daemon = Daemon(config)
    if parked_limit is not None:
        daemon.scheduler.slots = ProbeSlots(32, parked_limit)
    with capture_logs() as logs:
        await daemon.start()
    try:
        # The first round finds out which targets hang; from then on the healthy one must be on time.
        await asyncio.sleep(warm_up)
        settled = time.monotonic()
        await asyncio.sleep(10)
        metrics = daemon.metrics.registry.get_sample_value("tthc_scheduler_saturation")
    finally:
        await daemon.stop()
    arrivals = [moment for moment in healthy.arrivals if moment >= settled - 2]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(gaps) >= 4 and max(gaps) < 2.6, f"healthy target probed at gaps {[round(g, 2) for g in gaps]}"
    saturated = [entry for entry in logs if entry["event"] == "scheduler_saturated"]
    assert saturated and saturated[0]["log_level"] == "warning"
    assert saturated[0]["saturation"] == pytest.approx(201 * 0.5 / 32, abs=0.01)
    assert metrics == pytest.approx(201 * 0.5 / 32)


def test_saturation_figure() -> None:
    """Σ(timeout ÷ interval) over targets ÷ max_concurrency."""
    config = load_config_text(
        "targets:\n"
        "  - {name: a, type: tcp, host: 127.0.0.1, port: 1, interval: 10s, timeout: 5s}\n"
        "  - {name: b, type: tcp, host: 127.0.0.1, port: 1, interval: 1m, timeout: 3s}\n",
        environ={},
    )
    assert scheduler_saturation(config.targets, 2) == pytest.approx((0.5 + 0.05) / 2)
    assert scheduler_saturation([], 4) == 0.0


def test_lateness_buckets_reach_a_minute() -> None:
    """Lateness beyond the old 5 s top bucket is still told apart, up to at least 60 s."""
    from monitor.metrics import Metrics

    buckets = Metrics().probe_lateness._upper_bounds
    assert max(bound for bound in buckets if bound != float("inf")) >= 60


async def test_probe_slots_park_and_share() -> None:
    """A parked probe frees its slot and slow ticket; with parking full, slow targets get half the slots."""
    slots = ProbeSlots(4, parked_limit=1)
    first = await slots.hold(slow=True)
    slots.park(first)
    assert slots.parked == 1
    held = [await slots.hold(slow=False) for _ in range(4)]  # the parked probe's slot was given back
    slots.park(held[0])  # parking is full: keeps its slot
    assert slots.parked == 1
    for item in held:
        slots.release(item)
    slow = [await slots.hold(slow=True) for _ in range(2)]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await slots.hold(slow=True)  # half of 4 slots are slow already
    fast = [await slots.hold(slow=False) for _ in range(2)]
    for item in (first, *slow, *fast):
        slots.release(item)
    assert slots.parked == 0


def test_check_config_warns_about_saturation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config accepts an over-committed target list but warns, with the figure, on stderr."""
    from monitor.cli.main import main

    path = tmp_path / "monitor.yaml"
    path.write_text(
        "scheduler: {max_concurrency: 1}\ntargets:\n"
        "  - {name: a, type: tcp, host: 127.0.0.1, port: 1, interval: 2s, timeout: 2s}\n"
        "  - {name: b, type: tcp, host: 127.0.0.1, port: 1, interval: 2s, timeout: 1s}\n"
    )
    assert main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert "ok (2 targets)" in captured.out
    assert "warning: scheduler saturation 1.50" in captured.err


async def test_reload_reports_saturation(tmp_path: Path) -> None:
    """A reload that adds targets beyond the slots logs scheduler_saturated and updates the gauge."""
    path = tmp_path / "monitor.yaml"
    head = (
        f"listen: 127.0.0.1:0\nstore: {{path: {tmp_path / 'store.db'}}}\nscheduler: {{max_concurrency: 4}}\n"
    )
    path.write_text(head + "targets: []\n")
    daemon = Daemon(load_config(path, environ={}), config_path=path)
    await daemon.start()
    try:
        assert daemon.metrics.registry.get_sample_value("tthc_scheduler_saturation") == 0
        targets = "".join(
            f"  - {{name: t{index}, type: tcp, host: 127.0.0.1, port: 1, interval: 1m, timeout: 30s}}\n"
            for index in range(10)
        )
        path.write_text(head + "targets:\n" + targets)
        with capture_logs() as logs:
            assert await daemon.reload()
        gauge = daemon.metrics.registry.get_sample_value("tthc_scheduler_saturation")
    finally:
        await daemon.stop()
    assert gauge == pytest.approx(10 * 0.5 / 4)
    assert [entry["saturation"] for entry in logs if entry["event"] == "scheduler_saturated"] == [1.25]
