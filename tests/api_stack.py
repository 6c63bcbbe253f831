"""The demo as an API under test: the simulator and the daemon in-process on loopback, the shipped demo
config with its simulator addresses written in, a bearer token, and a config file to reload from."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from monitor.cli.main import demo_config_path
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.simulator import DEFAULT_PASSWORD, Simulator

__all__ = ["TOKEN", "DemoApi", "demo_api"]

TOKEN = "openapi-test-token"
_VARIABLE = re.compile(r"\$\{(\w+):-[^}]*\}")


@dataclass(frozen=True, slots=True)
class DemoApi:
    daemon: Daemon
    simulator: Simulator
    config_path: Path

    @property
    def base_url(self) -> str:
        return self.daemon.base_url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


def _demo_config_text(simulator: Simulator, data: Path, *, status_public: bool) -> str:
    values = {
        "TTHC_SIM_PORTAL_URL": simulator.portal_url,
        "TTHC_SIM_APP_URL": simulator.app_url,
        "TTHC_SIM_API_BASE": simulator.api_base,
        "TTHC_SIM_HTTPS_URL": simulator.https_url,
        "TTHC_SIM_CA_FILE": str(simulator.ca_file),
        "TTHC_SIM_HOST": "127.0.0.1",
        "TTHC_SIM_PORT": str(simulator.port),
        "TTHC_SIM_PASSWORD": DEFAULT_PASSWORD,
        "TTHC_SIM_BASIC": base64.b64encode(f"admin:{DEFAULT_PASSWORD}".encode()).decode(),
    }
    text = _VARIABLE.sub(lambda match: values[match.group(1)], demo_config_path().read_text(encoding="utf-8"))
    text = text.replace("listen: 127.0.0.1:9464", "listen: 127.0.0.1:0")
    text = text.replace("path: data/tthc-monitor-demo.db", f"path: {data / 'store.db'}")
    return text + f"\napi: {{token: {TOKEN}}}\nstatus: {{public: {str(status_public).lower()}}}\n"


@asynccontextmanager
async def demo_api(folder: Path, *, status_public: bool = False) -> AsyncIterator[DemoApi]:
    """The simulator and the daemon watching it, started and stopped around the block."""
    simulator = Simulator(state_dir=folder)
    await simulator.start(host="127.0.0.1", port=0, admin_port=0, tls_port=0)
    try:
        path = folder / "tthc-monitor.yaml"
        path.write_text(_demo_config_text(simulator, folder, status_public=status_public), encoding="utf-8")
        path.chmod(0o600)
        daemon = Daemon(load_config(path, environ={}), config_path=path)
        await daemon.start()
        try:
            yield DemoApi(daemon, simulator, path)
        finally:
            await daemon.stop()
    finally:
        await simulator.stop()
