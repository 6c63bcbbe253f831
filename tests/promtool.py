"""`promtool check metrics` for the tests that scrape /metrics or a collector's exposition."""

from __future__ import annotations

import asyncio
import shutil

import pytest

__all__ = ["assert_promtool_accepts"]


async def assert_promtool_accepts(exposition: str) -> None:
    """Fail unless promtool accepts the text; skip, saying why, where promtool is not installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    checker = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(checker.communicate(exposition.encode()), timeout=30)
    assert checker.returncode == 0, output.decode()
