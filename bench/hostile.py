"""Hostile inputs and overload, measured: what a misbehaving source or a blackholed network costs.

    python bench/hostile.py source --mode page      # a server ignoring `end`: one 256 MB page
    python bench/hostile.py source --mode endless   # an endless body at 100 MB/s, for 25 s at most
    python bench/hostile.py source --mode big       # a 24 MB page within the cap: the loop's longest stall
    python bench/hostile.py blackhole               # 2,000 hanging targets + 1 healthy, 5 s / 10 s

`source` runs the hostile server in a child process (its memory is not counted) and one json_api sync
in this process; it prints the sync's outcome, its wall time, peak RSS and RSS after it. `blackhole`
runs the daemon in-process against a loopback listener that never accepts plus one loopback web server,
and prints probe lateness (from tthc_probe_lateness_seconds) and the healthy target's probe gaps.
Everything talks to 127.0.0.1 only. Run it against another checkout with PYTHONPATH=that/checkout to
compare before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

_RECORD = (
    b'{"soHoSo": "000.00.12.H12-260301-%06d", "ngayNhan": "02/03/2026 08:00:00",'
    b' "ngayHenTra": "09/03/2026 17:00:00", "ghiChu": "' + b"x" * 100 + b'"}'
)


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _serve(mode: str, port_file: Path) -> None:
    async def reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        started = time.monotonic()
        sent = 0
        try:
            await response.write(b'{"data": [')
            for index in itertools.count():
                chunk = b", ".join(_RECORD % (index * 1000 + n) for n in range(1000))
                await response.write((b", " if index else b"") + chunk)
                sent += len(chunk)
                if mode == "page" and sent >= 256 * 1024 * 1024:
                    break
                if mode == "big" and sent >= 24 * 1000 * 1000:
                    break
                if mode == "endless":
                    if time.monotonic() - started > 25:
                        break
                    # Pace at about 100 MB/s.
                    await asyncio.sleep(max(0.0, sent / 100e6 - (time.monotonic() - started)))
            await response.write(b"]}")
        except ConnectionError:
            pass  # the client hung up at its cap: what is being measured
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", reply)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port_file.write_text(str(runner.addresses[0][1]))  # noqa: ASYNC240 (once, before serving)
    await asyncio.Event().wait()


async def _sync(port: int) -> dict[str, object]:
    from probes.sources.json_api import JsonApiSource, JsonApiSourceConfig

    config = JsonApiSourceConfig.model_validate(
        {
            "name": "vendor",
            "type": "json_api",
            "url": f"http://127.0.0.1:{port}/hoso",
            "fields": {"code": "soHoSo", "received_at": "ngayNhan", "due_at": "ngayHenTra"},
            "date_formats": ["%d/%m/%Y %H:%M:%S"],
            "items_path": "data",
            "timeout": "60s",
            "attempts": 1,
        }
    )
    source = JsonApiSource(config)
    stalls: list[float] = []

    async def ticker() -> None:
        # The loop's longest stall: how long a 1 ms sleep overslept.
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - asked - 0.001)

    watch = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    before = _rss_mb()
    started = time.perf_counter()
    try:
        batch = await source.fetch(since=None)
        outcome = f"ok, {len(batch.dossiers)} dossiers"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"[:160]
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.01)  # let the ticker record the stall that ended with the sync, if any
    watch.cancel()
    await source.close()
    return {
        "outcome": outcome,
        "seconds": round(elapsed, 2),
        "rss_before_mb": round(before),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_after_mb": round(_rss_mb()),
        "longest_loop_stall_ms": round(max(stalls, default=0.0) * 1000),
    }


def source_bench(mode: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        port_file = Path(folder) / "port"
        server = subprocess.Popen(
            [sys.executable, __file__, "serve", "--mode", mode, "--port-file", str(port_file)]
        )
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            return {"mode": mode, **asyncio.run(_sync(int(port_file.read_text())))}
        finally:
            server.terminate()
            server.wait()


async def _blackhole(args: argparse.Namespace) -> dict[str, object]:
    from monitor.config import load_config_text
    from monitor.daemon import Daemon

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    arrivals: list[float] = []

    async def healthy(_request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", healthy)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hole, good = listener.getsockname()[1], runner.addresses[0][1]
    targets = [
        f"  - {{name: hang-{n:04d}, type: http, url: 'http://127.0.0.1:{hole}/', interval: {args.interval}s,"
        f" timeout: {args.timeout}s}}"
        for n in range(args.targets)
    ]
    targets.append(
        f"  - {{name: portal, type: http, url: 'http://127.0.0.1:{good}/', interval: {args.interval}s,"
        f" timeout: {args.timeout}s}}"
    )
    with tempfile.TemporaryDirectory() as folder:
        config = load_config_text(
            f"listen: 127.0.0.1:0\nstore: {{path: {folder}/store.db}}\n"
            f"scheduler: {{max_concurrency: {args.max_concurrency}, shutdown_grace: 0.1s}}\n"
            "logging: {level: error}\ntargets:\n" + "\n".join(targets) + "\n",
            environ={},
        )
        daemon = Daemon(config)
        await daemon.start()
        await asyncio.sleep(args.warmup)
        settled = time.monotonic()
        histogram = daemon.metrics.probe_lateness
        start_samples = _lateness_samples(histogram)
        await asyncio.sleep(args.duration)
        end_samples = _lateness_samples(histogram)
        saturation = daemon.metrics.registry.get_sample_value("tthc_scheduler_saturation")
        await daemon.stop()
    await runner.cleanup()
    listener.close()
    buckets = {le: end_samples[le] - start_samples.get(le, 0) for le in end_samples if le != "sum"}
    total = buckets.get("+Inf", 0)
    lateness_sum = end_samples["sum"] - start_samples["sum"]
    gaps = [b - a for a, b in itertools.pairwise(t for t in arrivals if t >= settled)]
    top_finite = max(float(le) for le in buckets if le != "+Inf")
    above_5 = total - buckets.get("5.0", 0)
    return {
        "targets": args.targets,
        "probes_started": int(total),
        "mean_lateness_s": round(lateness_sum / total, 2) if total else None,
        "share_late_over_5s": round(above_5 / total, 3) if total else None,
        "share_late_over_top_bucket": round((total - buckets[str(top_finite)]) / total, 3) if total else None,
        "healthy_gap_mean_s": round(statistics.mean(gaps), 2) if gaps else None,
        "healthy_gap_max_s": round(max(gaps), 2) if gaps else None,
        "saturation_gauge": saturation,
    }


def _lateness_samples(histogram: object) -> dict[str, float]:
    """Cumulative bucket counts by `le`, and the sum under "sum"."""
    samples: dict[str, float] = {}
    for sample in next(iter(histogram.collect())).samples:  # type: ignore[attr-defined]
        if sample.name.endswith("_bucket"):
            samples[sample.labels["le"]] = sample.value
        elif sample.name.endswith("_sum"):
            samples["sum"] = sample.value
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    source = commands.add_parser("source")
    source.add_argument("--mode", choices=("page", "endless", "big"), default="page")
    serve = commands.add_parser("serve")
    serve.add_argument("--mode", choices=("page", "endless", "big"), default="page")
    serve.add_argument("--port-file", type=Path, required=True)
    hole = commands.add_parser("blackhole")
    hole.add_argument("--targets", type=int, default=2000)
    hole.add_argument("--timeout", type=float, default=5)
    hole.add_argument("--interval", type=float, default=10)
    hole.add_argument("--max-concurrency", type=int, default=256)
    hole.add_argument("--warmup", type=float, default=20)
    hole.add_argument("--duration", type=float, default=60)
    args = parser.parse_args()
    if args.command == "serve":
        asyncio.run(_serve(args.mode, args.port_file))
    elif args.command == "source":
        print(json.dumps(source_bench(args.mode)))
    else:
        print(json.dumps(asyncio.run(_blackhole(args))))


if __name__ == "__main__":
    main()
