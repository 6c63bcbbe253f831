"""The store holds officers' phone numbers, SMS texts and the Zalo refresh token: its file, WAL and SHM are
0600 in a 0700 folder, whatever the umask; a looser existing folder is reported."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor.store import SqliteStore


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common default umask 022, under which new files come out world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def _write_a_token(path: Path) -> None:
    async with SqliteStore(path) as store:
        await store.set_value("zalo:refresh_token", "rotated-refresh-token-0001")
        # Read back while the connection is open: the WAL and SHM files exist now.
        assert await store.get_value("zalo:refresh_token") == "rotated-refresh-token-0001"
        files = {suffix: mode(Path(f"{path}{suffix}")) for suffix in ("", "-wal", "-shm")}
        assert files == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


async def test_new_store_is_private(tmp_path: Path, open_umask: None) -> None:
    """A new store's folder is 0700 and its file, -wal and -shm are 0600 under umask 022."""
    path = tmp_path / "data" / "monitor.db"
    await _write_a_token(path)
    assert mode(path.parent) == 0o700 and mode(path) == 0o600


async def test_existing_loose_store_is_tightened_and_folder_reported(
    tmp_path: Path, open_umask: None
) -> None:
    """An existing 0644 store file (and WAL) is tightened; a 0755 folder is left as is, with a warning."""
    folder = tmp_path / "var"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    path = folder / "monitor.db"
    async with SqliteStore(path) as store:
        await store.set_value("k", "v")
    os.chmod(path, 0o644)
    Path(f"{path}-wal").touch()  # noqa: ASYNC240 (an empty WAL left world-readable by an older version)
    os.chmod(f"{path}-wal", 0o644)
    with capture_logs() as logs:
        await _write_a_token(path)
    assert mode(folder) == 0o755
    warnings = [entry for entry in logs if entry["event"] == "store_folder_not_private"]
    assert warnings and warnings[0]["mode"] == "0755" and warnings[0]["folder"] == str(folder)


async def test_report_export_is_private(tmp_path: Path, open_umask: None) -> None:
    """`tthc-monitor report --out FILE` writes the export 0600 under umask 022."""
    store = tmp_path / "data" / "monitor.db"
    async with SqliteStore(store):
        pass
    out = tmp_path / "report.md"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "report",
        "--month",
        "2025-10",
        "--store",
        str(store),
        "--out",
        str(out),
        cwd=Path(__file__).parent.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert mode(out) == 0o600


def test_start_up_check_creates_the_store_private(tmp_path: Path, open_umask: None) -> None:
    """The check run, demo and notify-test make before starting creates the folder 0700 and file 0600."""
    from monitor.cli.common import store_path_problem

    path = tmp_path / "state" / "monitor.db"
    with capture_logs() as logs:
        assert store_path_problem(path, "store.path", must_exist=False) is None
    assert mode(path.parent) == 0o700 and mode(path) == 0o600
    assert not [entry for entry in logs if entry["event"] == "store_folder_not_private"]
