"""Alert storm through the durable outbox against a local fake eSMS: throughput, latency, store growth.

    python bench/alert_storm.py                      # 10,000 alerts at once, then 50 alerts/s for 20 s
    python bench/alert_storm.py --count 2000 --steady-seconds 5 --concurrency 16

Storm: N due-soon alerts are enqueued at once (batches of 500, as the router would after a sync), and
the delivery worker sends them through an `sms_esms` channel to `tests.fakes.esms.FakeEsms` on 127.0.0.1
in the same process. Latency is event → the fake receiving the request (monotonic clock), so it
includes the wait in the outbox. Store growth is the file size (+ WAL) after a checkpoint, per alert.
Steady: one alert every 1/rate seconds; p99 of the same latency.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import TypeAdapter

from alerts.channels import ChannelConfig, ChannelDeps, build_channels
from alerts.config import DeliveryConfig
from alerts.delivery import DeliveryWorker
from alerts.model import AlertKind, AlertStatus, NewAlert, Severity
from alerts.outbox import Outbox, alert_id_for
from monitor.logging import configure_logging
from monitor.store import SqliteStore
from tests.fakes.esms import FakeEsms


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
            {
                "type": "sms_esms",
                "name": "sms",
                "api_key": esms.api_key,
                "secret_key": esms.secret_key,
                "brandname": "TTHC",
                "url": esms.url,
                "concurrency": args.concurrency,
            }
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16, help="the channel's concurrency")
    parser.add_argument("--rate", type=float, default=50.0, help="alerts per second in the steady run")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument("--log-level", default="warning", help="daemon log level (info logs every send)")
    args = parser.parse_args()
    configure_logging(args.log_level, "json")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
