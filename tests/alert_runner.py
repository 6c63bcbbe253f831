"""A stand-in daemon for tests/test_alert_crash.py: an alert storm through the real outbox and worker.

    TTHC_ESMS_API_KEY=... TTHC_ESMS_SECRET_KEY=... python -m tests.alert_runner --store JSON --url URL

Opens the store (`--store`: the `store:` section as JSON, SQLite or PostgreSQL: `stores.config(path)`),
enqueues `--count` due-soon alerts (idempotent: a restart re-enqueues the same keys, as the router
re-derives alerts after a crash), runs the delivery worker against an eSMS endpoint until nothing is left
to send, then prints one JSON line of figures. The test kills it with SIGKILL mid-storm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter

from alerts.channels import ChannelConfig, ChannelDeps, build_channels
from alerts.config import DeliveryConfig
from alerts.delivery import DeliveryWorker
from alerts.model import AlertKind, AlertStatus, NewAlert, Severity
from alerts.outbox import Outbox
from monitor.logging import configure_logging, register_secrets
from monitor.store.config import StoreConfig
from monitor.store.open import store_from_config

__all__ = ["storm_alerts"]


def storm_alerts(count: int, at: datetime) -> list[NewAlert]:
    """`count` due-soon alerts for distinct dossiers and officers (phones 0912000000 + n)."""
    alerts = []
    for number in range(count):
        code = f"000.00.12.H12-260304-{number:04d}"
        alerts.append(
            NewAlert(
                dedupe_key=f"storm:{number}",
                kind=AlertKind.DUE_SOON,
                severity=Severity.WARNING,
                person_id=f"can-bo-{number % 50:02d}",
                channels=("sms",),
                text=f"[TTHC] Ho so {code} con 4 gio lam viec, han 14:00 06/10.",
                event_at=at,
                not_before=at,
                phone=f"8491{number:07d}",
                subject=f"dossier:{code}",
                keep=(code,),
            )
        )
    return alerts


async def main(args: argparse.Namespace) -> int:
    api_key = os.environ["TTHC_ESMS_API_KEY"]
    secret_key = os.environ["TTHC_ESMS_SECRET_KEY"]
    register_secrets([api_key, secret_key])
    configure_logging("info", "json")
    config = TypeAdapter(ChannelConfig).validate_python(
        {
            "type": "sms_esms",
            "name": "sms",
            "api_key": api_key,
            "secret_key": secret_key,
            "brandname": "TTHC",
            "url": args.url,
            "concurrency": args.concurrency,
        }
    )
    async with store_from_config(StoreConfig.model_validate(json.loads(args.store))) as store:
        outbox = Outbox(store, claim_lease=timedelta(seconds=args.claim_lease))
        # Enqueue before the worker recovers: on a restart these are all known keys (0 new).
        added = 0
        alerts = storm_alerts(args.count, datetime.now(UTC))
        for start in range(0, len(alerts), 500):
            added += await outbox.enqueue(alerts[start : start + 500])
        print(json.dumps({"event": "enqueued", "new": added}), flush=True)
        deps = ChannelDeps(kv=store)
        channels = build_channels([config], deps)
        worker = DeliveryWorker(outbox, channels, DeliveryConfig(poll_interval="0.5s", backoff_base="0.2s"))
        in_flight_at_start = (await outbox.counts())[AlertStatus.IN_FLIGHT]
        try:
            await worker.start()
            while True:
                counts = await outbox.counts()
                if counts[AlertStatus.PENDING] == 0 and counts[AlertStatus.IN_FLIGHT] == 0:
                    break
                await asyncio.sleep(0.05)
            await worker.stop()
        finally:
            for channel in channels.values():
                await channel.close()
            await deps.aclose()
        counts = await outbox.counts()
    summary = {
        "event": "done",
        "new": added,
        "recovered": in_flight_at_start,
        "sent": counts[AlertStatus.SENT],
        "failed": counts[AlertStatus.FAILED],
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True, help="the store: section, as JSON")
    parser.add_argument("--claim-lease", type=float, default=15.0, help="seconds (PostgreSQL takeovers)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    sys.exit(asyncio.run(main(parser.parse_args())))
