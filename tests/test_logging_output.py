"""What a log line looks like under systemd or `docker logs`: Vietnamese as written, local time on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config, load_config_text

REPO = Path(__file__).parent.parent

_SCRIPT = """
import sys
from zoneinfo import ZoneInfo
import structlog
from monitor.logging import configure_logging
configure_logging("info", sys.argv[1], sys.argv[2], ZoneInfo("Asia/Ho_Chi_Minh"))
structlog.get_logger("test").info("dossier_due", unit="Phòng Tài nguyên và Môi trường", code="H12-0001")
"""


def _log_line(fmt: str, timestamps: str) -> str:
    """One log record written by a fresh process to a pipe (not a terminal), as bytes decoded as UTF-8."""
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, fmt, timestamps],
        capture_output=True,
        timeout=60,
        cwd=REPO,
        # The C locale of a bare systemd unit: the output must still be UTF-8.
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "LANG": "C"},
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.decode("utf-8").strip()


def test_json_logs_keep_vietnamese_readable() -> None:
    """JSON log lines carry `Phòng Tài nguyên`, not `Ph\\u00f2ng T\\u00e0i`."""
    line = _log_line("json", "utc")
    assert "\\u" not in line
    record = json.loads(line)
    assert record["unit"] == "Phòng Tài nguyên và Môi trường"
    assert record["timestamp"].endswith("Z")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_local_timestamps_carry_the_offset(fmt: str) -> None:
    """`logging.timestamps: local` writes the config's zone time with +07:00, in both formats."""
    line = _log_line(fmt, "local")
    stamp = json.loads(line)["timestamp"] if fmt == "json" else line.split()[0]
    assert stamp.endswith("+07:00"), line


def test_timestamps_setting_is_validated() -> None:
    """`logging.timestamps` takes utc or local; anything else is an error at its path."""
    config = load_config_text("logging: {timestamps: local}\ntargets: []", environ={})
    assert config.logging.timestamps == "local"
    with pytest.raises(ConfigError) as caught:
        load_config_text("logging: {timestamps: ict}\ntargets: []", environ={})
    assert caught.value.errors == ["logging.timestamps: input should be 'utc' or 'local'"]


def test_config_errors_show_the_phone_but_logs_do_not() -> None:
    """A bad phone is shown as written to the operator; the reload log gets it shortened."""
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "tests" / "fixtures" / "invalid" / "bad-phone.yaml", environ={})
    assert "'0212 345 678'" in caught.value.errors[0]
    assert caught.value.loggable_errors == [
        "alerts.directory.people[0].phone: '021…678' is not a vietnamese mobile number (03, 05, 07, 08, 09)"
    ]
