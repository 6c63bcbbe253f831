"""The real `prometheus` binary (Debian package) as a subprocess, for tests of the shipped rules and
dashboards: a generated config scraping one target, storage in a temporary folder, 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

__all__ = ["PrometheusServer", "free_port", "prometheus_binary"]

START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for programs that cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prometheus_binary() -> str:
    """The prometheus server binary; skip, saying why, where it is not installed."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus; .ci/run installs it)")
    return binary


class PrometheusServer:
    """Scrapes `target` (host:port) every `scrape_interval` as job `tthc-monitor` and loads `rule_files`.

    `await start()` returns once /-/ready answers; `query(expr)` is /api/v1/query's `data`; `stop()`
    sends SIGTERM and reaps the process (SIGKILL after 10 s).
    """

    def __init__(
        self, workdir: Path, target: str, rule_files: list[Path], *, scrape_interval: str = "1s"
    ) -> None:
        self.workdir = workdir
        self.target = target
        self.rule_files = rule_files
        self.scrape_interval = scrape_interval
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = workdir / "prometheus.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    async def start(self) -> None:
        binary = prometheus_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": "tthc-monitor",
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [{"targets": [self.target]}],
                }
            ],
        }
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.port = free_port()
        with self.log_path.open("wb") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                cwd=self.workdir,
            )
        async with aiohttp.ClientSession() as session:
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    while True:
                        assert self.process.returncode is None, f"prometheus exited:\n{self.log()[-3000:]}"
                        try:
                            async with session.get(f"{self.base_url}/-/ready") as response:
                                if response.status == 200:
                                    return
                        except aiohttp.ClientConnectionError:
                            pass
                        await asyncio.sleep(0.1)
            except TimeoutError:
                raise AssertionError(
                    f"prometheus not ready in {START_TIMEOUT}s:\n{self.log()[-3000:]}"
                ) from None

    async def api(self, session: aiohttp.ClientSession, path: str, **params: str) -> Any:
        """`data` of a successful API reply; fails the test with Prometheus's error otherwise."""
        async with session.get(f"{self.base_url}/api/v1/{path}", params=params) as response:
            body = await response.json()
        assert body.get("status") == "success", f"/api/v1/{path} {params}: {body}"
        return body["data"]

    async def query(self, session: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) `expr` evaluates to now."""
        data = await self.api(session, "query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
