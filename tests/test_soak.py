"""The soak bench scaled down for CI: `bench/soak.py` for 90 s at 200 targets, 10,000 dossiers and
10 alerts/s, asserting its invariants only (figures depend on the machine and are for bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_loses_nothing_duplicates_nothing_and_restarts_nothing(tmp_path: Path) -> None:
    """Under steady load no alert is lost or sent twice, the daemon lives, no task restarts, no 5xx."""
    result_file = tmp_path / "soak.json"
    run = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "1.5", "--targets", "200"),
            *("--dossiers", "10000", "--alert-rate", "10", "--warmup", "30", "--scrape-interval", "5"),
            *("--pages-every", "3"),
            *("--json", str(result_file)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(result_file.read_text(encoding="utf-8"))
    report = run.stdout[-2000:]
    assert result["daemon_alive"], report
    assert result["alerts_injected"] >= 0.9 * 10 * 90, report
    assert result["alerts_lost"] == 0 and result["alerts_duplicated"] == 0, report
    assert result["alerts_sent"] == result["alerts_injected"] == result["alerts_received"], report
    assert result["outbox_not_sent"] == {}, report
    # Every long-lived task is listed, and none was restarted.
    assert {"alert-delivery", "probe-dispatcher", "store-writer"} <= set(result["task_restarts"]), report
    assert not any(result["task_restarts"].values()), report
    assert result["http_5xx"] == 0 and result["scrape_failures"] == 0, report
    assert len(result["windows"]) >= 10, report
