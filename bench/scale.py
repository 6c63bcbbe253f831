"""Scale: the real daemon with 1,000,000 open dossiers from 10 simulated systems and 5,000 targets.

    python bench/scale.py                                   # SQLite, one daemon
    python bench/scale.py --store postgresql                # PostgreSQL (TTHC_TEST_POSTGRES_URL or --pg-url)
    python bench/scale.py --store postgresql --replicas 3   # three replicas on one PostgreSQL
    python bench/scale.py --dossiers 100000 --targets 500 --steady 30   # a quick look

What runs, each in its own process, all on 127.0.0.1:
- `--sources` simulators (`python -m monitor.simulator --code-prefix S<i>-`, niced), each with
  dossiers/sources open dossiers and its own seed, each read by one OpenCPS source (incremental every
  `--sync-interval`, a full reconcile every 30 minutes, and one at start);
- a page server (`bench/_blackbox.py page`) answering the `--targets` http targets (`/t/<i>`, a ~5 KB
  page with a keyword check), probed every `--probe-interval`;
- the daemon (`python -m monitor run`, logging at warning), or `--replicas` daemons with the same
  config and store (each `replicas.name` its own; needs the replicas feature in the daemon).

Measured per daemon from /proc (utime + stime, VmRSS, VmHWM): time from its start to the first full
evaluation (every source synced once in full, read from `tthc_dossier_sync_last_success_timestamp_seconds`
on /metrics, polled every 5 s; over replicas: every source on some member), CPU and RSS then; steady-state
CPU over `--steady` seconds after `--settle` more (incremental syncs, probes, the deadline timer, a
/metrics scrape every 15 s as Prometheus would); peak RSS; the store's size at the end (SQLite: file +
WAL; PostgreSQL: the schema's tables, indexes and TOAST). The simulators' and page server's CPU counts
for none of them. `--json FILE` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _blackbox  # the sibling module: run as a script, this folder is first on sys.path
import aiohttp
import yaml

from monitor.simulator import DEFAULT_PASSWORD

__all__ = ["ReplicaFigures", "ScaleResult", "main"]

ROOT = Path(__file__).resolve().parent.parent
GROUP_ID = "35402"
SYNC_METRIC = "tthc_dossier_sync_last_success_timestamp_seconds"
OPEN_METRIC = "tthc_dossiers_open"
Child = subprocess.Popen[bytes]


@dataclass(slots=True)
class ReplicaFigures:
    """One daemon's figures."""

    name: str
    first_evaluation_s: float | None = None
    cpu_at_first_evaluation_s: float | None = None
    rss_at_first_evaluation_mb: float | None = None
    sources_owned: int = 0
    tracked: int = 0
    steady_cpu_pct: float | None = None
    rss_end_mb: float | None = None
    rss_peak_mb: float | None = None
    exit_code: int | None = None


@dataclass(slots=True)
class ScaleResult:
    command: str
    machine: str
    store: str
    dossiers: int
    sources: int
    targets: int
    replicas: list[ReplicaFigures] = field(default_factory=list)
    first_full_evaluation_s: float | None = None
    tracked: int = 0
    store_mb: float | None = None
    error: str = ""


def daemon_config(
    args: argparse.Namespace, ports: dict[str, int], sims: list[int], store: dict[str, str], replica: int
) -> dict:
    config: dict = {
        "timezone": "Asia/Ho_Chi_Minh",
        "listen": f"127.0.0.1:{ports[f'daemon{replica}']}",
        "store": store,
        "logging": {"level": "warning", "format": "json"},
        "targets": [
            {
                "type": "http",
                "name": f"page-{index:05d}",
                "url": f"http://127.0.0.1:{ports['page']}/t/{index}",
                "interval": args.probe_interval,
                "timeout": "5s",
                "expect": {"body_contains": [_blackbox.KEYWORD]},
            }
            for index in range(args.targets)
        ],
        "dossiers": {
            "sources": [
                {
                    "name": f"system-{index:02d}",
                    "type": "opencps",
                    "base_url": f"http://127.0.0.1:{port}/o/rest/v2",
                    "group_id": GROUP_ID,
                    "username": "admin",
                    "password": DEFAULT_PASSWORD,
                    "page_size": 500,
                    "timeout": "120s",
                    "interval": args.sync_interval,
                    "full_interval": "30m",
                }
                for index, port in enumerate(sims)
            ],
            "thresholds": ["2d", "4h"],
        },
    }
    if args.replicas > 1:
        # Started together: one heartbeat's wait lets each see the others before taking work.
        config["replicas"] = {"name": f"replica-{replica}", "lease": "10s", "join_wait": "3.333s"}
    return config


async def scrape(session: aiohttp.ClientSession, port: int) -> tuple[set[str], int] | None:
    """Sources synced at least once, and dossiers tracked, on one daemon (None when it does not answer)."""
    try:
        async with session.get(
            f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(300)
        ) as reply:
            text = await reply.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    samples = _blackbox.parse_metrics(text, (SYNC_METRIC, OPEN_METRIC))
    synced = {labels["source"] for labels, value in samples.get(SYNC_METRIC, []) if value > 0}
    tracked = int(sum(value for _, value in samples.get(OPEN_METRIC, [])))
    return synced, tracked


def store_section(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, str], str]:
    if args.store == "sqlite":
        return {"path": str(workdir / "store.db")}, ""
    schema = f"tthc_scale_{uuid.uuid4().hex[:8]}"
    return {"url": args.pg_url, "schema": schema}, schema


def store_mb(args: argparse.Namespace, workdir: Path, schema: str) -> float:
    if args.store == "sqlite":
        size = sum(path.stat().st_size for path in workdir.glob("store.db*"))
        return round(size / 2**20, 1)
    import psycopg

    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
    return round(int(row[0]) / 2**20, 1) if row else 0.0


def drop_schema(args: argparse.Namespace, schema: str) -> None:
    if args.store != "postgresql" or not schema:
        return
    import psycopg

    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def spawn_simulator(
    args: argparse.Namespace, workdir: Path, index: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = _blackbox.free_port()
    child = _blackbox.spawn(
        [
            *("nice", "-n", "5", sys.executable, "-m", "monitor.simulator"),
            *("--listen", f"127.0.0.1:{port}", "--admin-port", str(_blackbox.free_port())),
            *("--tls-port", str(_blackbox.free_port()), "--seed", str(3 + index)),
            *("--dossiers", str(args.dossiers // args.sources), "--code-prefix", f"S{index}-"),
            *("--state-dir", str(workdir / f"sim{index}")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return child, port


def ready(child: Child, port: int, timeout: float = 1800) -> bool:
    """Whether the child answers on its port; False as soon as it has exited (its port was taken)."""
    deadline = time.monotonic() + timeout
    while child.poll() is None:
        try:
            _blackbox.wait_http(port, timeout=5)
            return True
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
    return False


def start_simulators(
    args: argparse.Namespace, workdir: Path
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    started = [spawn_simulator(args, workdir, index) for index in range(args.sources)]
    for index in range(args.sources):
        # Free ports are picked before the child binds them: another process may take one meanwhile.
        attempts = 1
        while not ready(*started[index]):
            if attempts == 3:
                raise RuntimeError(f"simulator {index} did not start (three attempts)")
            started[index] = spawn_simulator(args, workdir, index)
            attempts += 1
    return [child for child, _ in started], [port for _, port in started]


async def measure(args: argparse.Namespace, workdir: Path, result: ScaleResult) -> None:
    children: list[subprocess.Popen[bytes]] = []
    store, schema = store_section(args, workdir)
    try:
        started = time.monotonic()
        sims, sim_ports = start_simulators(args, workdir)
        children += sims
        print(f"{args.sources} simulators ready in {time.monotonic() - started:.0f} s", flush=True)
        ports = {"page": _blackbox.free_port()}
        ports.update({f"daemon{replica}": _blackbox.free_port() for replica in range(args.replicas)})
        children.append(_blackbox.spawn_page_server(ports["page"]))
        _blackbox.wait_http(ports["page"])
        daemons: list[subprocess.Popen[bytes]] = []
        figures = [ReplicaFigures(f"replica-{replica}") for replica in range(args.replicas)]
        result.replicas = figures
        begun = time.monotonic()
        for replica in range(args.replicas):
            config = workdir / f"config{replica}.yaml"
            config.write_text(
                yaml.safe_dump(daemon_config(args, ports, sim_ports, store, replica), allow_unicode=True),
                encoding="utf-8",
            )
            with (workdir / f"daemon{replica}.log").open("wb") as log:
                daemon = _blackbox.spawn(
                    [sys.executable, "-m", "monitor", "run", "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            daemons.append(daemon)
            children.append(daemon)
        wanted = {f"system-{index:02d}" for index in range(args.sources)}
        async with aiohttp.ClientSession() as session:
            while result.first_full_evaluation_s is None:
                await asyncio.sleep(5)
                if any(daemon.poll() is not None for daemon in daemons):
                    result.error = "a daemon exited before the first full evaluation (see its log below)"
                    return
                if time.monotonic() - begun > args.patience:
                    result.error = f"no full evaluation within {args.patience:.0f} s"
                    return
                covered: set[str] = set()
                for replica in range(len(daemons)):
                    seen = await scrape(session, ports[f"daemon{replica}"])
                    if seen is None:
                        continue
                    synced, tracked = seen
                    figure = figures[replica]
                    figure.sources_owned, figure.tracked = len(synced), tracked
                    covered |= synced
                if covered >= wanted:
                    result.first_full_evaluation_s = round(time.monotonic() - begun, 1)
                    for figure, daemon in zip(figures, daemons, strict=True):
                        figure.cpu_at_first_evaluation_s = round(_blackbox.proc_cpu_seconds(daemon.pid), 1)
                        figure.rss_at_first_evaluation_mb = round(
                            _blackbox.proc_rss_bytes(daemon.pid) / 2**20
                        )
                        figure.first_evaluation_s = result.first_full_evaluation_s
                    result.tracked = sum(figure.tracked for figure in figures)
            print(
                f"first full evaluation after {result.first_full_evaluation_s} s: {result.tracked:,} tracked",
                flush=True,
            )
            await asyncio.sleep(args.settle)
            cpu = [_blackbox.proc_cpu_seconds(daemon.pid) for daemon in daemons]
            wall = time.monotonic()
            until = wall + args.steady
            while time.monotonic() < until:
                for replica in range(args.replicas):
                    await scrape(session, ports[f"daemon{replica}"])
                await asyncio.sleep(min(15.0, max(0.0, until - time.monotonic())))
            wall = time.monotonic() - wall
            for figure, daemon, before in zip(figures, daemons, cpu, strict=True):
                figure.steady_cpu_pct = round(
                    (_blackbox.proc_cpu_seconds(daemon.pid) - before) / wall * 100, 2
                )
                figure.rss_end_mb = round(_blackbox.proc_rss_bytes(daemon.pid) / 2**20)
                figure.rss_peak_mb = round(_blackbox.proc_rss_bytes(daemon.pid, "VmHWM") / 2**20)
                figure.exit_code = daemon.poll()
        result.store_mb = store_mb(args, workdir, schema)
    finally:
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        drop_schema(args, schema)
        if result.error:
            for log in sorted(workdir.glob("daemon*.log")):  # noqa: ASYNC240 - once, after the run
                print(
                    f"--- {log.name} (last lines)\n"
                    + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                )


def report(result: ScaleResult) -> None:
    print(f"command: {result.command}")
    print(f"machine: {result.machine}; store: {result.store}")
    print(f"{result.dossiers:,} dossiers over {result.sources} sources, {result.targets:,} targets")
    if result.error:
        print(f"FAILED: {result.error}")
    print(f"first full evaluation: {result.first_full_evaluation_s} s, {result.tracked:,} dossiers tracked")
    for figure in result.replicas:
        print(
            f"  {figure.name}: sources {figure.sources_owned}, tracked {figure.tracked:,};"
            f" at first evaluation {figure.cpu_at_first_evaluation_s} s CPU,"
            f" RSS {figure.rss_at_first_evaluation_mb} MB; steady {figure.steady_cpu_pct} % of a core;"
            f" RSS end {figure.rss_end_mb} MB, peak {figure.rss_peak_mb} MB"
        )
    print(f"store: {result.store_mb} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dossiers", type=int, default=1_000_000, help="open dossiers over all sources")
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--targets", type=int, default=5_000)
    parser.add_argument("--probe-interval", default="60s")
    parser.add_argument("--sync-interval", default="2m", help="incremental sync interval of each source")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("TTHC_TEST_POSTGRES_URL", ""))
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument(
        "--settle", type=float, default=30.0, help="seconds between first evaluation and steady"
    )
    parser.add_argument("--steady", type=float, default=120.0, help="seconds of steady state measured")
    parser.add_argument(
        "--patience", type=float, default=1800.0, help="give up on the first evaluation after"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.store == "postgresql" and not args.pg_url:
        parser.error("--store postgresql needs --pg-url or TTHC_TEST_POSTGRES_URL")
    if args.replicas > 1 and args.store != "postgresql":
        parser.error("replicas share a PostgreSQL store: add --store postgresql")
    result = ScaleResult(
        command=" ".join(shlex.quote(part) for part in ["python", "bench/scale.py", *sys.argv[1:]]),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        store=args.store,
        dossiers=args.dossiers,
        sources=args.sources,
        targets=args.targets,
    )
    # Stopped with SIGTERM (or by a shell that ignores SIGINT in the background): still stop the children
    # and drop the PostgreSQL schema, through the finally blocks.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="tthc-scale-") as folder:
        asyncio.run(measure(args, Path(folder), result))
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
    return 1 if result.error else 0


if __name__ == "__main__":
    sys.exit(main())
