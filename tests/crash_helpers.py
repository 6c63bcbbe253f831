"""Helpers for killing the real daemon mid-storm: a slowed-down fake eSMS and a daemon subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from monitor.simulator import DEFAULT_PASSWORD, Simulator
from monitor.simulator.catalog import UNITS
from tests.fakes.esms import FakeEsms

__all__ = [
    "DEADLINES_AT_ONCE",
    "DaemonProcess",
    "SlowEsms",
    "crash_config",
    "simulator_dossiers",
    "simulator_source",
    "sms_alerts",
]

ROOT = Path(__file__).resolve().parent.parent

# Every deadline crossing to the dossier's assignee by SMS at once, day or night: an alert storm.
DEADLINES_AT_ONCE: dict[str, Any] = {
    "name": "deadlines-now",
    "on": ["due_soon", "last_warning", "overdue"],
    "to": ["assignee"],
    "channels": ["sms"],
    "working_hours_only": False,
    "quiet_hours": False,
}


class SlowEsms(FakeEsms):
    """FakeEsms that holds each send for `delay` seconds, so a storm lasts long enough to be interrupted."""

    def __init__(self, *, delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay = delay


def simulator_source(sim: Simulator, name: str = "motcua") -> dict[str, Any]:
    """One `dossiers.sources` entry syncing the simulator's OpenCPS API hourly (tests need the first sync)."""
    return {
        "name": name,
        "type": "opencps",
        "base_url": sim.api_base,
        "group_id": "35402",
        "username": "admin",
        "password": DEFAULT_PASSWORD,
        "interval": "1h",
        "full_interval": "1h",
    }


def simulator_dossiers(sim: Simulator) -> dict[str, Any]:
    """The `dossiers:` section syncing the simulator as the one source `motcua`."""
    return {"sources": [simulator_source(sim)], "thresholds": ["2d", "4h"]}


def sms_alerts(
    esms: FakeEsms, *, concurrency: int, sms_per_unit: int = 3, timeout: str = "10s"
) -> dict[str, Any]:
    """The `alerts:` section: every officer (the first `sms_per_unit` of each unit) reachable by SMS,
    each deadline crossing of their dossiers sent to them at once."""
    people = [
        {
            "id": f"officer-{officer.user_id}",
            "name": officer.name,
            # Distinct valid mobile numbers; the fake checks the format.
            "phone": f"0912{officer.user_id:06d}",
            "units": [unit.code],
            "roles": ["officer"],
            "channels": ["sms"],
            "assignee_ids": [str(officer.user_id)],
        }
        for unit in UNITS
        for officer in unit.officers[:sms_per_unit]
    ]
    return {
        "channels": [esms.channel_settings(concurrency=concurrency, timeout=timeout)],
        "directory": {
            "units": [{"code": unit.code, "name": unit.name} for unit in UNITS],
            "people": people,
        },
        "rules": [dict(DEADLINES_AT_ONCE)],
        "quiet_hours": None,
        "delivery": {"poll_interval": "1s"},
    }


def crash_config(
    tmp_path: Path,
    sim: Simulator,
    esms: FakeEsms,
    *,
    concurrency: int,
    sms_per_unit: int = 3,
    store: dict[str, Any] | None = None,
) -> Path:
    """A config file: the simulator as dossier source, every officer reachable by SMS, alerts at once.

    `store` is the `store:` section (tests/store_engines.py `stores.config`); default the SQLite file
    monitor.db in `tmp_path`."""
    config = {
        "timezone": "Asia/Ho_Chi_Minh",
        "logging": {"level": "info", "format": "json"},
        "listen": "127.0.0.1:0",
        "store": {**(store or {"path": str(tmp_path / "monitor.db")}), "flush_interval": "1s"},
        "targets": [],
        "dossiers": simulator_dossiers(sim),
        "alerts": sms_alerts(esms, concurrency=concurrency, sms_per_unit=sms_per_unit),
    }
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class DaemonProcess:
    """`python -m monitor run --config FILE` with its stderr in a file; `base_url` once it has started."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.base_url = ""

    async def start(self, start_timeout: float = 20.0) -> str:
        await self.spawn()
        started = await self.wait_for_event("daemon_started", start_timeout)
        self.base_url = f"http://{started['listen']}"
        return self.base_url

    async def spawn(self) -> None:
        """Start the process without waiting for it to come up."""
        with self.log_path.open("wb") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "monitor",
                "run",
                "--config",
                str(self.config),
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log_file,
            )

    async def wait_for_event(self, name: str, seconds: float, poll: float = 0.05) -> dict[str, Any]:
        """The first log event called `name`, once the daemon has logged it (checked every `poll` s)."""
        assert self.process is not None
        async with asyncio.timeout(seconds):
            while True:
                found = [event for event in self.log_events() if event.get("event") == name]
                if found:
                    return found[0]
                assert self.process.returncode is None, f"daemon exited at start-up:\n{self.log()[-3000:]}"
                await asyncio.sleep(poll)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def send_signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signum)

    async def wait(self, seconds: float) -> int:
        """The exit code, within `seconds`."""
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), seconds)

    async def kill(self) -> None:
        """SIGKILL (if still running) and reap, so no process outlives the test."""
        if self.process is None:
            return
        self.send_signal(signal.SIGKILL)
        await self.process.wait()
