"""Alert storm against a local fake eSMS: throughput, latency, store growth; the outbox alone or end to end.

    python bench/alert_storm.py                      # 10,000 alerts at once, then 50 alerts/s for 20 s
    python bench/alert_storm.py --count 2000 --steady-seconds 5 --concurrency 16
    python bench/alert_storm.py --end-to-end         # 2,000 dossiers cross a threshold at once

End to end: the daemon (`python -m monitor run`), the dossier system (bench/_storm_simulator.py) and the
fake eSMS (`python -m tests.fakes.esms`) each in their own process, default delivery and channel
settings. The daemon syncs the dossiers, which all cross their `1h` threshold at one instant (a
continuous calendar, so it works at any hour); latency is from that instant to the fake's acceptance
(its request log, monotonic clock), throughput is alerts over the time from the instant to the last one.

Storm: N due-soon alerts are enqueued at once (batches of 500, as the router would after a sync), and
the delivery worker sends them through an `sms_esms` channel to `tests.fakes.esms.FakeEsms` on 127.0.0.1
in the same process. Latency is event → the fake receiving the request (monotonic clock), so it
includes the wait in the outbox. Store growth is the file size (+ WAL) after a checkpoint, per alert.
Steady: one alert every 1/rate seconds; p99 of the same latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from pydantic import TypeAdapter

from alerts.channels import ChannelConfig, ChannelDeps, build_channels
from alerts.config import DeliveryConfig
from alerts.delivery import DeliveryWorker
from alerts.model import AlertKind, AlertStatus, NewAlert, Severity
from alerts.outbox import Outbox, alert_id_for
from bench._blackbox import free_port, proc_cpu_seconds, spawn, wait_http
from monitor.logging import configure_logging
from monitor.simulator import DEFAULT_PASSWORD
from monitor.simulator.catalog import UNITS
from monitor.store import SqliteStore
from tests.crash_helpers import DEADLINES_AT_ONCE
from tests.fakes import FakeServer
from tests.fakes.esms import FakeEsms

ROOT = Path(__file__).resolve().parent.parent


def _alert(key: str, number: int, at: datetime) -> NewAlert:
    code = f"000.00.12.H12-260304-{number:05d}"
    return NewAlert(
        dedupe_key=key,
        kind=AlertKind.DUE_SOON,
        severity=Severity.WARNING,
        person_id=f"can-bo-{number % 200:03d}",
        channels=("sms",),
        text=f"[TTHC] Ho so {code} (Cap GCN QSDD) con 4 gio lam viec, han 14:00 06/10. "
        "Neu khong kip, gui Phieu xin loi truoc han.",
        event_at=at,
        not_before=at,
        template_params={"dossier_code": code, "due_at": "14:00 06/10"},
        phone=f"8491{number % 10_000_000:07d}",
        subject=f"dossier:{code}",
        keep=(code, "14:00 06/10"),
    )


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _file_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


async def _wait_sent(esms: FakeEsms, outbox: Outbox, total: int) -> None:
    # Polling the fake's list is free; counting rows in the store on every turn would skew the figures.
    while len(esms.messages) < total:  # noqa: ASYNC110 - the fake has no event to wait on
        await asyncio.sleep(0.01)
    while (await outbox.counts())[AlertStatus.SENT] < total:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def run(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="alert-storm-"))
    path = folder / "store.db"
    async with FakeEsms() as esms:
        config = TypeAdapter(ChannelConfig).validate_python(
            esms.channel_settings(concurrency=args.concurrency)
        )
        async with SqliteStore(path) as store:
            empty = _file_bytes(path)
            outbox = Outbox(store)
            deps = ChannelDeps(kv=store)
            channels = build_channels([config], deps)
            worker = DeliveryWorker(outbox, channels, DeliveryConfig())
            enqueued_at: dict[str, int] = {}
            try:
                await worker.start()
                # --- storm ---
                now = datetime.now(UTC)
                alerts = [_alert(f"storm:{n}", n, now) for n in range(args.count)]
                started = time.monotonic()
                for first in range(0, len(alerts), 500):
                    batch = alerts[first : first + 500]
                    stamp = time.monotonic_ns()
                    for alert in batch:
                        enqueued_at[alert_id_for(alert.dedupe_key)] = stamp
                    await outbox.enqueue(batch)
                await _wait_sent(esms, outbox, args.count)
                elapsed = time.monotonic() - started
                storm = [
                    (request.received_ns - enqueued_at[request.json()["RequestId"]]) / 1e9
                    for request in esms.requests
                ]
                size = _file_bytes(path)
                print(f"storm: {args.count} alerts in {elapsed:.2f} s = {args.count / elapsed:.0f} alerts/s")
                print(
                    f"  event->gateway p50 {statistics.median(storm) * 1000:.0f} ms,"
                    f" p99 {_percentile(storm, 0.99) * 1000:.0f} ms"
                )
                print(f"  store growth: {(size - empty) / args.count:.0f} bytes per alert ({size} bytes)")
                print(f"  gateway requests {len(esms.requests)}, duplicates {esms.duplicates}")
                # --- steady ---
                seen = len(esms.requests)
                total = args.count
                interval = 1 / args.rate
                next_at = time.monotonic()
                steady_count = int(args.rate * args.steady_seconds)
                for n in range(steady_count):
                    next_at += interval
                    alert = _alert(f"steady:{n}", args.count + n, datetime.now(UTC))
                    enqueued_at[alert_id_for(alert.dedupe_key)] = time.monotonic_ns()
                    await outbox.enqueue([alert])
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                total += steady_count
                await _wait_sent(esms, outbox, total)
                steady = [
                    (request.received_ns - enqueued_at[request.json()["RequestId"]]) / 1e9
                    for request in esms.requests[seen:]
                ]
                print(
                    f"steady {args.rate:g}/s for {args.steady_seconds:g} s: p50"
                    f" {statistics.median(steady) * 1000:.1f} ms,"
                    f" p99 {_percentile(steady, 0.99) * 1000:.1f} ms,"
                    f" max {max(steady) * 1000:.1f} ms"
                )
            finally:
                await worker.stop()
                for channel in channels.values():
                    await channel.close()
                await deps.aclose()


def _e2e_config(
    folder: Path, api_base: str, esms_url: str, port: int, log_level: str, concurrency: int | None
) -> Path:
    """The daemon's config: the simulator as source, every officer reachable by SMS, alerts at once."""
    people = [
        {
            "id": f"officer-{officer.user_id}",
            "phone": f"0912{officer.user_id:06d}",
            "units": [unit.code],
            "channels": ["sms"],
            "assignee_ids": [str(officer.user_id)],
        }
        for unit in UNITS
        for officer in unit.officers
    ]
    config = {
        "timezone": "Asia/Ho_Chi_Minh",
        "logging": {"level": log_level, "format": "json"},
        "listen": f"127.0.0.1:{port}",
        "store": {"path": str(folder / "monitor.db")},
        "calendars": {"default": "continuous"},
        "targets": [],
        "dossiers": {
            "sources": [
                {
                    "name": "motcua",
                    "type": "opencps",
                    "base_url": api_base,
                    "group_id": "35402",
                    "username": "admin",
                    "password": DEFAULT_PASSWORD,
                    "interval": "1h",
                    "full_interval": "1h",
                }
            ],
            "thresholds": ["1h"],
        },
        "alerts": {
            "channels": [
                {
                    "name": "sms",
                    "type": "sms_esms",
                    "url": esms_url,
                    "api_key": "fake-esms-api-key",
                    "secret_key": "fake-esms-secret-key",
                    "brandname": "TTHC",
                    **({"concurrency": concurrency} if concurrency else {}),
                }
            ],
            "directory": {"units": [{"code": u.code, "name": u.name} for u in UNITS], "people": people},
            "rules": [dict(DEADLINES_AT_ONCE)],
            "quiet_hours": None,
        },
    }
    path = folder / "monitor.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _first_line(process: Any, prefix: str) -> str:
    """The first line the child prints that starts with `prefix` (log lines may come before)."""
    while True:
        line = process.stdout.readline().decode()
        if not line:
            raise SystemExit(f"child process printed no {prefix!r} line (exit {process.poll()})")
        if line.startswith(prefix):
            return line.strip()


async def _accepted(url: str, total: int, until: float) -> list[dict[str, Any]]:
    """The fake's log entries of accepted sends, once it has `total` (or at `until`, monotonic)."""
    import aiohttp

    found: list[dict[str, Any]] = []
    seen = 0
    async with aiohttp.ClientSession() as session:
        while len(found) < total and time.monotonic() < until:
            async with session.get(url + FakeServer.LOG_PATH, params={"from": str(seen)}) as response:
                items = await response.json()
            done = [item for item in items if item["status"]]
            # Entries still waiting for their reply are read again next time.
            waiting = next((n for n, item in enumerate(items) if not item["status"]), len(items))
            seen += waiting
            found.extend(item for item in done[:waiting] if item["status"] == 200)
            await asyncio.sleep(0.05)
    return found


def end_to_end(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="alert-storm-e2e-"))
    children = []
    try:
        esms = spawn(
            [sys.executable, "-m", "tests.fakes.esms", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE
        )
        children.append(esms)
        esms_base = _first_line(esms, "http")
        at = float(int(time.time()) + args.lead)
        simulator = spawn(
            [sys.executable, str(ROOT / "bench" / "_storm_simulator.py"), "--count", str(args.count),
             "--at", str(at)],
            cwd=ROOT, stdout=subprocess.PIPE,
        )  # fmt: skip
        children.append(simulator)
        sim = json.loads(_first_line(simulator, "{"))
        port = free_port()
        concurrency = args.concurrency if "--concurrency" in sys.argv else None
        config = _e2e_config(
            folder, sim["api_base"], esms_base + FakeEsms.PATH, port, args.log_level, concurrency
        )
        with (folder / "daemon.log").open("wb") as log_file:
            profile = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
            daemon = spawn([sys.executable, *profile, "-m", "monitor", "run", "--config", str(config)],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_file)  # fmt: skip
        children.append(daemon)
        wait_http(port, "/healthz", timeout=30)
        if time.time() > at - 1:
            raise SystemExit(f"the daemon took too long to start; raise --lead (now {args.lead:g} s)")
        print(f"end to end: {sim['count']} dossiers cross at {datetime.fromtimestamp(at, UTC):%H:%M:%S} UTC")
        # The crossing instant on the monotonic clock the fake's log uses.
        crossing_ns = int(at * 1e9) - (time.time_ns() - time.monotonic_ns())
        roles = {"daemon": daemon, "fake eSMS": esms, "simulator": simulator}
        cpu_before = {name: proc_cpu_seconds(child.pid) for name, child in roles.items()}
        accepted = asyncio.run(_accepted(esms_base, sim["count"], time.monotonic() + args.lead + 120))
        cpu = {name: proc_cpu_seconds(child.pid) - cpu_before[name] for name, child in roles.items()}
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited ({daemon.returncode}); see {folder / 'daemon.log'}")
        ids = {json.loads(item["body"])["RequestId"] for item in accepted}
        latency = [(item["replied_ns"] - crossing_ns) / 1e9 for item in accepted]
        if not latency:
            raise SystemExit(f"no alert reached the gateway; see {folder / 'daemon.log'}")
        span = max(latency)
        print(f"  {len(accepted)} alerts accepted ({len(ids)} distinct) of {sim['count']} crossings")
        print(f"  throughput {len(accepted) / span:.0f} alerts/s (crossing -> last acceptance {span:.2f} s)")
        print(
            f"  crossing->gateway p50 {statistics.median(latency) * 1000:.0f} ms,"
            f" p99 {_percentile(latency, 0.99) * 1000:.0f} ms, first {min(latency) * 1000:.0f} ms"
        )
        # From the wait before the crossing to the end of the storm: what each process spent.
        print("  CPU from start-up to the last alert: " + ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items()))
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGINT if child is children[-1] else signal.SIGTERM)
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16, help="the channel's concurrency")
    parser.add_argument("--rate", type=float, default=50.0, help="alerts per second in the steady run")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument("--log-level", default="warning", help="daemon log level (info logs every send)")
    parser.add_argument("--end-to-end", action="store_true", help="daemon, simulator and gateway processes")
    parser.add_argument("--lead", type=float, default=15.0, help="end to end: seconds until the crossing")
    parser.add_argument("--profile", type=Path, default=None, help="end to end: cProfile the daemon")
    args = parser.parse_args()
    if args.end_to_end:
        if "--count" not in sys.argv:
            args.count = 2000
        end_to_end(args)
        return
    configure_logging(args.log_level, "json")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
