"""The API bearer token: scheme case-insensitive (RFC 7235); a warning when open to the network."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from monitor.config import load_config_text
from monitor.daemon import Daemon
from monitor.web.config import is_loopback_host

TOKEN = "api-token-6f1d2c9e"


def _config(tmp_path: Path, listen: str, token: str | None) -> str:
    api = f"api: {{token: {token}}}\n" if token else ""
    return f"listen: {listen}\n{api}store: {{path: {tmp_path / 'store.db'}}}\nlogging: {{format: json}}\n"


async def test_bearer_scheme_is_case_insensitive(tmp_path: Path) -> None:
    """`bearer`, `BEARER` and `Bearer` all work with the right token; a wrong token or scheme is 401."""
    daemon = Daemon(load_config_text(_config(tmp_path, "127.0.0.1:0", TOKEN), environ={}))
    await daemon.start()
    try:
        url = f"{daemon.base_url}/api/v1/targets"
        async with aiohttp.ClientSession() as session:
            statuses = {}
            for header in (
                f"Bearer {TOKEN}",
                f"bearer {TOKEN}",
                f"BEARER  {TOKEN}",
                f"Bearer {TOKEN}x",
                f"Basic {TOKEN}",
                TOKEN,
                "",
            ):
                async with session.get(url, headers={"Authorization": header}) as response:
                    statuses[header] = response.status
    finally:
        await daemon.stop()
    assert list(statuses.values()) == [200, 200, 200, 401, 401, 401, 401]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.0.9", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("10.0.0.5", False),
        ("monitor.example.vn", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """Only loopback addresses and `localhost` count as local-only."""
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("listen", "token", "warned"),
    [
        ("0.0.0.0:0", None, True),
        ("0.0.0.0:0", TOKEN, False),
        ("127.0.0.1:0", None, False),
    ],
)
async def test_warning_when_api_is_open_to_the_network(
    tmp_path: Path, listen: str, token: str | None, warned: bool
) -> None:
    """Start-up warns when the API listens beyond loopback without a token (no request leaves 127.0.0.1)."""
    daemon = Daemon(load_config_text(_config(tmp_path, listen, token), environ={}))
    with capture_logs() as logs:
        await daemon.start()
        await daemon.stop()
    events = [entry for entry in logs if entry["event"] == "api_open_to_network"]
    assert bool(events) is warned
    if warned:
        assert events[0]["log_level"] == "warning" and "api.token" in events[0]["hint"]
