"""Soak: the real daemon (`python -m monitor run`) under a steady full load for a long time.

    nice python bench/soak.py                       # 30 minutes: 1,000 targets, 100,000 dossiers, 50 alerts/s
    python bench/soak.py --minutes 2 --targets 200 --dossiers 10000 --alert-rate 10 --warmup 30

What runs, each in its own process, all on 127.0.0.1:
- a page server (aiohttp, `bench/_blackbox.py page`) serving the ~5 KB portal page to N http targets
  probed every `--interval` seconds with a keyword check;
- the built-in simulator (`python -m monitor.simulator`) with `--dossiers` open dossiers, synced by an
  OpenCPS source every 10 s (a full sync every 5 min); its world moves with the clock (dossiers received,
  processed, returned), which is the steady trickle of changes;
- the daemon itself, its store in a temporary folder, logging at warning;
- in this process: the fake eSMS gateway (`tests/fakes/esms.py`) and the alert injector, which writes
  `--alert-rate` alerts per second into the daemon's outbox through a second store connection, as
  `tthc-monitor notify-test` does; and the scraper, reading /metrics every `--scrape-interval` seconds
  and /api/v1/targets and /status every `--pages-every` scrapes (5 minutes by default).

Printed: RSS of the daemon after the warm-up and at the end (goal: < 5 % growth), probe lateness p99 per
scrape window (from the histogram's bucket deltas; goal: no drift), store size, alerts injected / sent /
lost / duplicated, task restarts, 5xx replies. `--json FILE` writes the same as one JSON object (the slow
test in tests/test_soak.py reads it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _blackbox  # the sibling module: run as a script, this folder is first on sys.path
import aiohttp
import yaml

from alerts.model import AlertKind, AlertStatus, NewAlert, Severity
from alerts.outbox import Outbox, alert_id_for
from monitor.simulator import DEFAULT_PASSWORD
from monitor.store import SqliteStore
from tests.fakes.esms import FakeEsms

__all__ = ["SoakResult", "main"]

ROOT = Path(__file__).resolve().parent.parent
GROUP_ID = "35402"
PHONE = "0912345678"
LATENESS = "tthc_probe_lateness_seconds"
RESTARTS = "tthc_task_restarts_total"
SEGMENT_SECONDS = 300


@dataclass(slots=True)
class Window:
    """One scrape: when (seconds since start), the daemon's RSS, lateness p99 since the previous scrape."""

    at: float
    rss_mb: float
    lateness_p99_ms: float
    probes: int
    alerts_received: int
    store_mb: float


@dataclass(slots=True)
class SoakResult:
    command: str
    machine: str
    minutes: float
    targets: int
    dossiers: int
    alert_rate: float
    rss_after_warmup_mb: float = math.nan
    rss_end_mb: float = math.nan
    rss_growth_pct: float = math.nan
    store_mb_end: float = math.nan
    alerts_injected: int = 0
    alerts_sent: int = 0  # rows the outbox holds as sent
    alerts_received: int = 0  # distinct RequestIds the fake gateway accepted
    alerts_lost: int = 0  # injected, yet never received by the gateway
    alerts_duplicated: int = 0  # RequestIds the gateway saw more than once
    outbox_not_sent: dict[str, int] = field(default_factory=dict)
    task_restarts: dict[str, float] = field(default_factory=dict)
    http_5xx: int = 0
    injector_lock_timeouts: int = 0  # outbox writes of the injector that hit the busy timeout
    scrape_failures: int = 0
    daemon_alive: bool = False
    daemon_exit: int | None = None
    windows: list[Window] = field(default_factory=list)


# --- the daemon's config ---------------------------------------------------------------------------


def daemon_config(args: argparse.Namespace, workdir: Path, ports: dict[str, int], esms: FakeEsms) -> dict:
    api_base = f"http://127.0.0.1:{ports['sim']}/o/rest/v2"
    return {
        "timezone": "Asia/Ho_Chi_Minh",
        "listen": f"127.0.0.1:{ports['daemon']}",
        "store": {"path": str(workdir / "store.db")},
        "logging": {"level": "warning", "format": "json"},
        "targets": [
            {
                "type": "http",
                "name": f"page-{index:05d}",
                "url": f"http://127.0.0.1:{ports['page']}/p/{index}",
                "interval": f"{args.interval}s",
                "timeout": "5s",
                "expect": {"body_contains": [_blackbox.KEYWORD]},
            }
            for index in range(args.targets)
        ],
        "dossiers": {
            "sources": [
                {
                    "name": "motcua",
                    "type": "opencps",
                    "base_url": api_base,
                    "group_id": GROUP_ID,
                    "username": "admin",
                    "password": DEFAULT_PASSWORD,
                    "interval": "10s",
                    "full_interval": "5m",
                }
            ],
            "thresholds": ["2d", "4h"],
        },
        "alerts": {
            "channels": [esms.channel_settings(timeout="5s", concurrency=16)],
            "directory": {
                "people": [{"id": "soak", "name": "Cán bộ trực", "phone": PHONE, "roles": ["it_oncall"]}]
            },
            "quiet_hours": None,
        },
    }


# --- /metrics ----------------------------------------------------------------------------------------


def lateness_buckets(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for labels, value in samples.get(f"{LATENESS}_bucket", []):
        bound = float(labels["le"].replace("+Inf", "inf"))
        buckets[bound] = buckets.get(bound, 0.0) + value
    return buckets


def p99_between(before: dict[float, float], after: dict[float, float]) -> tuple[float, int]:
    """The bucket upper bound holding the 99th percentile of the observations made between two scrapes."""
    bounds = sorted(after)
    if not bounds:
        return math.nan, 0
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    if total <= 0:
        return math.nan, 0
    for bound in bounds:
        if after[bound] - before.get(bound, 0.0) >= 0.99 * total:
            return bound, int(total)
    return bounds[-1], int(total)


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


# --- the load ----------------------------------------------------------------------------------------


def _alert(number: int, at: datetime) -> NewAlert:
    code = f"000.00.12.H12-261201-{number:06d}"
    return NewAlert(
        dedupe_key=f"soak:{number}",
        kind=AlertKind.DUE_SOON,
        severity=Severity.WARNING,
        person_id="soak",
        channels=("sms",),
        text=f"[TTHC] Ho so {code} con 4 gio lam viec, han 14:00 06/10.",
        event_at=at,
        not_before=at,
        template_params={"dossier_code": code, "due_at": "14:00 06/10"},
        phone="84" + PHONE[1:],
        subject=f"dossier:{code}",
        keep=(code, "14:00 06/10"),
    )


async def inject_alerts(
    outbox: Outbox, rate: float, until: float, injected: list[str], lock_waits: list[float]
) -> None:
    """`rate` alerts per second into the outbox, in ticks of 0.2 s, until the monotonic time `until`."""
    tick = 0.2
    owed = 0.0
    next_at = time.monotonic()
    while time.monotonic() < until:
        owed += rate * tick
        count, owed = int(owed), owed - int(owed)
        now = datetime.now(UTC)
        batch = [_alert(len(injected) + n, now) for n in range(count)]
        while batch:
            try:
                await outbox.enqueue(batch)
            except sqlite3.OperationalError as exc:
                # The daemon's first full sync of 100,000 dossiers holds the write lock longer than the
                # busy timeout; what was not committed is retried, so nothing counts as injected twice.
                if "locked" not in str(exc):
                    raise
                lock_waits.append(time.monotonic())
                continue
            injected.extend(alert.dedupe_key for alert in batch)
            break
        next_at += tick
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def scrape_loop(
    session: aiohttp.ClientSession,
    base: str,
    args: argparse.Namespace,
    result: SoakResult,
    pid: int,
    store: Path,
    esms: FakeEsms,
    started: float,
    until: float,
) -> None:
    previous: dict[float, float] = {}
    scrapes = 0
    while time.monotonic() < until:
        await asyncio.sleep(min(args.scrape_interval, max(0.0, until - time.monotonic())))
        scrapes += 1
        # /status renders every target's daily bars: ~20 MB and ~1.6 s at 1,000 targets, much of it on
        # the loop; read every 15 s it was most of the lateness, so it is read every --pages-every scrapes.
        pages = ("/api/v1/targets", "/status") if scrapes % args.pages_every == 1 % args.pages_every else ()
        try:
            for path in pages:
                async with session.get(base + path) as reply:
                    await reply.read()
                    result.http_5xx += reply.status >= 500
            async with session.get(base + "/metrics") as reply:
                text = await reply.text()
                result.http_5xx += reply.status >= 500
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.scrape_failures += 1
            print(f"  scrape failed: {exc!r}", flush=True)
            continue
        samples = _blackbox.parse_metrics(text)
        buckets = lateness_buckets(samples)
        p99, probes = p99_between(previous, buckets)
        previous = buckets
        result.task_restarts = {labels.get("task", ""): value for labels, value in samples.get(RESTARTS, [])}
        window = Window(
            at=round(time.monotonic() - started, 1),
            rss_mb=round(_blackbox.proc_rss_bytes(pid) / 2**20, 1),
            lateness_p99_ms=round(p99 * 1000, 1) if not math.isnan(p99) else math.nan,
            probes=probes,
            alerts_received=len(esms.messages),
            store_mb=round(store_bytes(store) / 2**20, 1),
        )
        result.windows.append(window)
        if time.monotonic() - started >= args.warmup and math.isnan(result.rss_after_warmup_mb):
            result.rss_after_warmup_mb = window.rss_mb
            print(f"  warm-up over: RSS {window.rss_mb} MB", flush=True)
        print(
            f"  t={window.at:7.0f} s  RSS {window.rss_mb:7.1f} MB"
            f"  lateness p99 {window.lateness_p99_ms:6.1f} ms ({probes} probes)"
            f"  alerts received {window.alerts_received}  store {window.store_mb} MB",
            flush=True,
        )


async def wait_drained(outbox: Outbox, esms: FakeEsms, injected: list[str], patience: float) -> None:
    """Until every injected alert is out of pending (or `patience` seconds)."""
    deadline = time.monotonic() + patience
    wanted = {alert_id_for(key) for key in injected}
    while time.monotonic() < deadline:
        received = {message["request_id"] for message in esms.messages}
        if wanted <= received and (await outbox.counts()).get(AlertStatus.PENDING, 0) == 0:
            return
        await asyncio.sleep(0.5)


async def soak(args: argparse.Namespace, workdir: Path) -> SoakResult:
    result = SoakResult(
        command=" ".join(shlex.quote(part) for part in ["python", "bench/soak.py", *sys.argv[1:]]),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        minutes=args.minutes,
        targets=args.targets,
        dossiers=args.dossiers,
        alert_rate=args.alert_rate,
    )
    ports = {name: _blackbox.free_port() for name in ("page", "sim", "daemon")}
    children: list[subprocess.Popen[bytes]] = []
    log_path = workdir / "daemon.log"
    try:
        children.append(_blackbox.spawn_page_server(ports["page"]))
        children.append(
            _blackbox.spawn(
                [
                    *("nice", "-n", "5", sys.executable, "-m", "monitor.simulator"),
                    *("--listen", f"127.0.0.1:{ports['sim']}", "--admin-port", str(_blackbox.free_port())),
                    *("--tls-port", str(_blackbox.free_port()), "--seed", "3"),
                    *("--dossiers", str(args.dossiers), "--state-dir", str(workdir / "sim")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
        )
        _blackbox.wait_http(ports["page"])
        _blackbox.wait_http(ports["sim"], timeout=300)
        async with FakeEsms() as esms:
            config = workdir / "config.yaml"
            config.write_text(
                yaml.safe_dump(daemon_config(args, workdir, ports, esms), allow_unicode=True),
                encoding="utf-8",
            )
            with log_path.open("wb") as log:
                daemon = _blackbox.spawn(
                    [sys.executable, "-m", "monitor", "run", "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            children.append(daemon)
            _blackbox.wait_http(ports["daemon"], "/healthz", timeout=120)
            started = time.monotonic()
            until = started + args.minutes * 60
            store_path = workdir / "store.db"
            injected: list[str] = []
            lock_waits: list[float] = []
            async with SqliteStore(store_path) as store, aiohttp.ClientSession() as session:
                outbox = Outbox(store)
                await asyncio.gather(
                    inject_alerts(outbox, args.alert_rate, until, injected, lock_waits),
                    scrape_loop(
                        session,
                        f"http://127.0.0.1:{ports['daemon']}",
                        args,
                        result,
                        daemon.pid,
                        store_path,
                        esms,
                        started,
                        until,
                    ),
                )
                await wait_drained(outbox, esms, injected, patience=60)
                counts = await outbox.counts()
                result.daemon_exit = daemon.poll()
                result.daemon_alive = result.daemon_exit is None
                result.rss_end_mb = round(_blackbox.proc_rss_bytes(daemon.pid) / 2**20, 1)
                result.alerts_injected = len(injected)
                result.injector_lock_timeouts = len(lock_waits)
                result.alerts_sent = counts.get(AlertStatus.SENT, 0)
                result.outbox_not_sent = {
                    status.value: count
                    for status, count in counts.items()
                    if status is not AlertStatus.SENT and count
                }
                received = [message["request_id"] for message in esms.messages]
                result.alerts_received = len(set(received))
                wanted = {alert_id_for(key) for key in injected}
                result.alerts_lost = len(wanted - set(received))
                result.alerts_duplicated = esms.duplicates + (len(received) - len(set(received)))
            result.store_mb_end = round(store_bytes(store_path) / 2**20, 1)
            if not math.isnan(result.rss_after_warmup_mb):
                result.rss_growth_pct = round(
                    100 * (result.rss_end_mb - result.rss_after_warmup_mb) / result.rss_after_warmup_mb, 2
                )
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    errors = [
        line for line in log_path.read_text(errors="replace").splitlines() if '"level": "error"' in line
    ]
    if errors:
        print(f"  daemon logged {len(errors)} errors; first: {errors[0][:300]}", flush=True)
    return result


def report(result: SoakResult) -> None:
    print(f"\n$ {result.command}\n{result.machine}")
    print(
        f"targets {result.targets}, dossiers {result.dossiers}, {result.alert_rate:g} alerts/s,"
        f" {result.minutes:g} min"
    )
    print(
        f"RSS after warm-up {result.rss_after_warmup_mb} MB, at the end {result.rss_end_mb} MB"
        f" (growth {result.rss_growth_pct} %)"
    )
    print("lateness p99 of the scrape windows, per 5 minutes (median / max), RSS at the segment's end:")
    for start in range(0, int(result.minutes * 60) + 1, SEGMENT_SECONDS):
        windows = [w for w in result.windows if start <= w.at < start + SEGMENT_SECONDS]
        p99s = sorted(w.lateness_p99_ms for w in windows if not math.isnan(w.lateness_p99_ms))
        if p99s:
            print(
                f"  {start // 60:3d}-{start // 60 + SEGMENT_SECONDS // 60:<3d} min:"
                f" {p99s[len(p99s) // 2]:7.1f} / {p99s[-1]:7.1f} ms, RSS {windows[-1].rss_mb} MB"
            )
    print(f"store {result.store_mb_end} MB")
    print(
        f"alerts: injected {result.alerts_injected}, sent {result.alerts_sent},"
        f" received {result.alerts_received}, lost {result.alerts_lost},"
        f" duplicated {result.alerts_duplicated}, not sent {result.outbox_not_sent}"
    )
    restarted = {task: value for task, value in result.task_restarts.items() if value}
    print(
        f"task restarts {restarted or 'none'}, 5xx {result.http_5xx},"
        f" scrape failures {result.scrape_failures}"
    )
    print(f"injector writes that timed out on the store lock (retried): {result.injector_lock_timeouts}")
    print(f"daemon alive at the end: {result.daemon_alive}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=10, help="probe interval, seconds")
    parser.add_argument("--dossiers", type=int, default=100_000)
    parser.add_argument("--alert-rate", type=float, default=50.0, help="alerts per second into the outbox")
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument(
        "--pages-every", type=int, default=20, help="read /status and /api/v1/targets every N scrapes"
    )
    parser.add_argument("--warmup", type=float, default=300.0, help="seconds before the first RSS figure")
    parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    parser.add_argument("--report", type=Path, help="only print the report of a saved --json result")
    args = parser.parse_args(argv)
    if args.report is not None:
        saved = json.loads(args.report.read_text(encoding="utf-8"))
        saved["windows"] = [Window(**window) for window in saved["windows"]]
        report(SoakResult(**saved))
        return 0
    with tempfile.TemporaryDirectory(prefix="tthc-soak-") as folder:
        result = asyncio.run(soak(args, Path(folder)))
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(result), ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
