"""kill -9 in the middle of an alert storm: after a restart every alert is delivered exactly once as far as
the gateway is concerned, repeats are dropped by RequestId and bounded by the sends in flight at the kill."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from alerts.outbox import alert_id_for
from tests.fakes.esms import FakeEsms
from tests.store_engines import StoreFactory

COUNT = 2000
CONCURRENCY = 8
API_KEY = "storm-esms-api-key-5Jq0x"
SECRET_KEY = "storm-esms-secret-key-W2m8r"
ROOT = Path(__file__).resolve().parent.parent


async def _start_runner(store: dict[str, str], url: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "TTHC_ESMS_API_KEY": API_KEY, "TTHC_ESMS_SECRET_KEY": SECRET_KEY}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.alert_runner",
        "--store",
        json.dumps(store),
        # On PostgreSQL the killed runner's claims come back once their lease lapsed.
        "--claim-lease",
        "2",
        "--url",
        url,
        "--count",
        str(COUNT),
        "--concurrency",
        str(CONCURRENCY),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _statuses(stores: StoreFactory, store: Path) -> dict[str, int]:
    return dict(stores.query(store, "SELECT status, count(*) FROM alert_outbox GROUP BY status"))


@pytest.mark.slow
async def test_kill_9_mid_storm_then_restart_delivers_everything(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """SIGKILL after about a third of 2,000 alerts went out; the restarted runner finishes the job (on
    PostgreSQL taking the killed one's claims over once their lease lapsed)."""
    store = tmp_path / "store.db"
    async with FakeEsms(api_key=API_KEY, secret_key=SECRET_KEY) as esms:
        first = await _start_runner(stores.config(store), esms.url)
        try:
            async with asyncio.timeout(60):
                while len(esms.messages) < COUNT // 3:
                    assert first.returncode is None, "the runner ended before the kill"
                    await asyncio.sleep(0.005)
        finally:
            first.send_signal(signal.SIGKILL)
            _out, first_err = await first.communicate()
        assert first.returncode == -signal.SIGKILL
        at_kill = _statuses(stores, store)
        in_flight_at_kill = at_kill.get("in_flight", 0)
        assert in_flight_at_kill <= CONCURRENCY, "claims never exceed the channel's concurrency"
        assert at_kill.get("pending", 0) > 0, "killed in the middle of the storm"
        delivered_before = len(esms.messages)

        second = await _start_runner(stores.config(store), esms.url)
        async with asyncio.timeout(60):
            out, second_err = await second.communicate()
        assert second.returncode == 0, second_err.decode()[-2000:]
        summary = json.loads(out.decode().strip().splitlines()[-1])

    expected = {alert_id_for(f"storm:{number}") for number in range(COUNT)}
    seen = [message["request_id"] for message in esms.messages]
    assert set(seen) == expected, "the gateway saw every alert"
    assert len(seen) == COUNT, "and accepted each once"
    assert delivered_before < COUNT
    # Repeats reached the gateway only for rows that were in flight at the kill, and it dropped them.
    assert esms.duplicates <= in_flight_at_kill <= CONCURRENCY
    assert summary == {
        "event": "done",
        "new": 0,
        "recovered": in_flight_at_kill,
        "sent": COUNT,
        "failed": 0,
    }
    assert _statuses(stores, store) == {"sent": COUNT}
    logs = first_err.decode() + second_err.decode()
    assert "alert_sent" in logs
    for secret in (API_KEY, SECRET_KEY):
        assert secret not in logs
    assert "8491000" not in logs, "no phone numbers in logs"
