"""promtool (Debian package prometheus) for the tests: `check metrics` on /metrics expositions, and
`check rules`, `test rules` and `check config` on the shipped Prometheus files."""

from __future__ import annotations

import asyncio
import shutil

import pytest

__all__ = ["assert_promtool_accepts", "run_promtool"]

PROMTOOL_TIMEOUT = 60.0


async def run_promtool(*args: str, stdin: str | None = None) -> tuple[int, str]:
    """promtool's exit code and combined output; skip, saying why, where promtool is not installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    process = await asyncio.create_subprocess_exec(
        promtool,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else None), timeout=PROMTOOL_TIMEOUT
    )
    assert process.returncode is not None
    return process.returncode, output.decode()


async def assert_promtool_accepts(exposition: str) -> None:
    """Fail unless `promtool check metrics` accepts the text; skip where promtool is not installed."""
    code, output = await run_promtool("check", "metrics", stdin=exposition)
    assert code == 0, output
