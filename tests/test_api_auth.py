"""The API bearer token: the scheme is case-insensitive (RFC 7235)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from monitor.config import load_config_text
from monitor.daemon import Daemon
from tests.store_engines import StoreFactory

TOKEN = "api-token-6f1d2c9e"


def _config(tmp_path: Path, stores: StoreFactory, listen: str, token: str | None) -> str:
    api = f"api: {{token: {token}}}\n" if token else ""
    store = json.dumps(stores.config(tmp_path / "store.db"))
    return f"listen: {listen}\n{api}store: {store}\nlogging: {{format: json}}\n"


async def test_bearer_scheme_is_case_insensitive(tmp_path: Path, stores: StoreFactory) -> None:
    """`bearer`, `BEARER` and `Bearer` all work with the right token; a wrong token or scheme is 401."""
    daemon = Daemon(load_config_text(_config(tmp_path, stores, "127.0.0.1:0", TOKEN), environ={}))
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
