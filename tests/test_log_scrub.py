"""Secrets never reach any output: scrubbing runs on the final rendered line, tracebacks and stdlib
records (aiohttp's loggers) included."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).parent.parent
SECRET = 'tok-9c1e-"quoted"-Đồng-Tháp-4b7f'


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _healthy(base_url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        while True:
            assert process.returncode is None, _tail(log)
            try:
                async with session.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_secret_in_exceptions_never_reaches_output(tmp_path: Path, fmt: str) -> None:
    """A secret quoted in an exception, logged by log.exception and by aiohttp's server logger, is masked
    in stdout and stderr of the real daemon, whatever the log format."""
    port = _free_port()
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        "api: {token: '${TTHC_LEAKED_SECRET}'}\n"
        f"store: {{path: {tmp_path / 'store.db'}}}\n"
        f"logging: {{format: {fmt}}}\n"
        f"targets: [{{name: self, type: tcp, host: 127.0.0.1, port: {port}, interval: 1m}}]\n",
        encoding="utf-8",
    )
    log = tmp_path / "daemon.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.leaky_store_runner",
            "run",
            "--config",
            str(config),
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TTHC_LEAKED_SECRET": SECRET},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _healthy(base_url, process, log)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{base_url}/api/v1/targets/self/uptime", headers={"Authorization": f"Bearer {SECRET}"}
            ) as reply,
        ):
            assert reply.status == 500 and SECRET not in await reply.text()
        async with asyncio.timeout(10):
            while not {"uptime_refresh_failed", "Error handling request"} <= _words(log):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # a log file has nothing to wait on but polling
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" in text and "database is locked" in text and "[redacted]" in text
    for form in (SECRET, SECRET.replace('"', '\\"'), "tok-9c1e-"):
        assert form not in text, f"secret leaked as {form!r}"


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:]


def _words(log: Path) -> set[str]:
    text = log.read_text(encoding="utf-8", errors="replace")
    return {word for word in ("uptime_refresh_failed", "Error handling request") if word in text}


def test_transient_tokens_are_bounded() -> None:
    """Tokens issued at run time are scrubbed, but only the newest 64 are kept; configured secrets stay."""
    from monitor.logging import register_secrets, scrub_text

    register_secrets(["configured-key-41f0"])
    tokens = [f"issued-token-{number:04d}" for number in range(100)]
    for token in tokens:
        register_secrets([token], transient=True)
    assert scrub_text(tokens[-1]) == "[redacted]" and scrub_text(tokens[-64]) == "[redacted]"
    assert scrub_text(tokens[0]) == tokens[0]
    assert scrub_text("configured-key-41f0") == "[redacted]"
