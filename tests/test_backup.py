"""`tthc-monitor backup`: a consistent copy of a live store that never holds up the daemon's commits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.cli.main import main
from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.store import ProbeResult, SqliteStore
from monitor.store.backup import backup_source, backup_store
from monitor.store.base import StoreError
from monitor.store.config import StoreConfig

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = ProbeOutcome(success=False, reason=FailureReason.TIMEOUT, detail="timed out")
TARGETS = [f"xa-{i:02d}" for i in range(40)]
# The daemon's commits may not wait longer than this while a backup runs (the default flush is 1 s).
COMMIT_GAP_BOUND = 0.5


def failure(target: str, at: datetime) -> ProbeResult:
    return ProbeResult(target, at, 10.0, TIMEOUT, Health.DOWN)


async def seed(store: SqliteStore, count: int, start: datetime) -> None:
    """Commit `count` failures (each one a row), spread over the targets one second apart."""
    for i in range(count):
        store.record(failure(TARGETS[i % len(TARGETS)], start + timedelta(seconds=i // len(TARGETS))))
        if i % 5000 == 4999:
            await store.flush()
    await store.flush()


def temporary_files(folder: Path) -> list[str]:
    """Names a backup leaves behind when it cleans up badly: its hidden temporary file and journals."""
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def owners(store: Path) -> set[tuple[int, int]]:
    """(uid, gid) of the store file and of its -wal and -shm when present."""
    found = set()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(f"{store}{suffix}")
            found.add((info.st_uid, info.st_gid))
    return found


async def probe_rows(path: Path) -> int:
    copy = await SqliteStore.open_readonly(path)
    try:
        rows = await copy.reader.execute_fetchall("SELECT count(*) FROM probe_results")
        return int(rows[0][0])
    finally:
        await copy.close()


async def test_backup_of_a_live_store_is_consistent_and_never_stalls_commits(tmp_path: Path) -> None:
    """A slow stepped backup runs while the store commits every 10 ms; no commit waits past the bound."""
    path = tmp_path / "data" / "tthc-monitor.db"
    start = datetime.now(UTC) - timedelta(hours=2)
    store = SqliteStore(path, flush_interval=3600)
    await store.open()
    try:
        await seed(store, 60_000, start)
        seeded = await probe_rows(path)
        assert seeded == 60_000
        destination = tmp_path / "backups" / "store.db"
        destination.parent.mkdir()
        # Small steps and a pause: the copy takes seconds, well past the bound, so a backup that held
        # the daemon's writes for its whole length could not pass.
        backup = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "backup", "--store", str(path), str(destination),
            "--step-pages", "4", "--pause", "10ms",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        )  # fmt: skip
        began = time.monotonic()
        last_commit = began
        longest_gap = 0.0
        written = 0
        waiter = asyncio.ensure_future(backup.communicate())
        while not waiter.done():
            for target in TARGETS[:20]:
                store.record(failure(target, start + timedelta(hours=1, milliseconds=written)))
                written += 1
            await store.flush()
            now = time.monotonic()
            longest_gap = max(longest_gap, now - last_commit)
            last_commit = now
            await asyncio.sleep(0.01)
        out, err = await waiter
        lasted = time.monotonic() - began
    finally:
        await store.close()
    assert backup.returncode == 0, err.decode()
    assert "integrity check ok" in out.decode()
    print(f"backup {lasted:.2f} s, {written} results committed meanwhile, longest gap {longest_gap:.3f} s")
    assert lasted > 3 * COMMIT_GAP_BOUND, "the backup was too quick to show anything"
    assert written > 1000
    assert longest_gap < COMMIT_GAP_BOUND
    assert stat.S_IMODE(destination.stat().st_mode) == 0o600
    # One snapshot: every seeded row, plus whatever was committed before the copy's read began.
    copied = await probe_rows(destination)
    assert seeded <= copied < seeded + written
    assert await probe_rows(path) == seeded + written
    assert os.listdir(destination.parent) == ["store.db"]
    with sqlite3.connect(destination) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("delete",)


async def test_backup_of_a_stopped_store_replaces_the_old_backup(tmp_path: Path) -> None:
    """With the daemon stopped the copy holds everything; a second backup replaces the first."""
    path = tmp_path / "store.db"
    async with SqliteStore(path) as store:
        await seed(store, 2000, datetime.now(UTC) - timedelta(hours=1))
    destination = tmp_path / "copy.db"
    first = backup_store(path, destination)
    assert first.steps == -(-first.pages // 256)
    assert await probe_rows(destination) == 2000
    async with SqliteStore(path) as store:
        await seed(store, 40, datetime.now(UTC))
    second = backup_store(path, destination, step_pages=1, pause=0)
    assert second.steps >= second.pages
    assert await probe_rows(destination) == 2040
    assert temporary_files(tmp_path) == []


async def test_a_corrupt_store_fails_the_integrity_check_and_keeps_the_old_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged page makes the backup fail with the integrity error; the previous backup stays."""
    path = tmp_path / "store.db"
    async with SqliteStore(path) as store:
        await seed(store, 20_000, datetime.now(UTC) - timedelta(hours=1))
    destination = tmp_path / "copy.db"
    backup_store(path, destination)
    before = destination.read_bytes()
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with path.open("r+b") as handle:
        # Scribble over a page in the middle of the file (a b-tree page of the results).
        handle.seek(page_size * (pages // 2))
        handle.write(b"\x0d" + b"\xff" * (page_size - 1))
    assert main(["backup", "--store", str(path), str(destination)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tthc-monitor: ") and ("integrity check" in err or "malformed" in err)
    assert "Traceback" not in err
    assert destination.read_bytes() == before
    assert temporary_files(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--pause", "5q"], 2, "--pause: invalid duration '5q'"),
        (["--step-pages", "0"], 2, "--step-pages: must be at least 1"),
    ],
)
def test_bad_options_name_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    """A bad --pause or --step-pages is an exit 2 with a message naming the option."""
    store = tmp_path / "store.db"
    store.touch()
    assert main(["backup", "--store", str(store), str(tmp_path / "copy.db"), *args]) == code
    assert message in capsys.readouterr().err


async def test_destination_errors_are_precise(tmp_path: Path) -> None:
    """A missing folder, a folder, the store itself or a missing store each get their own message."""
    path = tmp_path / "store.db"
    async with SqliteStore(path) as store:
        await seed(store, 10, datetime.now(UTC))
    cases = {
        tmp_path / "nowhere" / "copy.db": "folder .* does not exist",
        tmp_path: "is a folder: name the backup file",
        path: "is the store itself",
        Path(f"{path}-wal"): "is the store itself",
    }
    for destination, message in cases.items():
        with pytest.raises(StoreError, match=message):
            backup_store(path, destination)
    with pytest.raises(StoreError, match="no store at"):
        backup_store(tmp_path / "missing.db", tmp_path / "copy.db")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can create files another user owns")
async def test_a_backup_run_as_root_leaves_the_store_files_to_their_owner(tmp_path: Path) -> None:
    """-wal and -shm that a root backup creates beside a stopped store end up owned by the store's owner."""
    path = tmp_path / "store.db"
    async with SqliteStore(path) as store:
        await seed(store, 10, datetime.now(UTC))
    os.chown(path, 4321, 4321)
    backup_store(path, tmp_path / "copy.db")
    assert owners(path) == {(4321, 4321)}


def test_a_postgresql_store_is_refused_with_a_pointer_to_pg_dump(tmp_path: Path) -> None:
    """The online copy is SQLite's: a `store.url` gets one line naming pg_dump; a path gets the file."""
    postgres = StoreConfig.model_validate({"url": "postgresql://monitor@127.0.0.1:5432/tthc"})
    with pytest.raises(StoreError, match="pg_dump") as refused:
        backup_source(postgres)
    assert "\n" not in str(refused.value)
    assert backup_source(StoreConfig.model_validate({"path": str(tmp_path / "s.db")})) == tmp_path / "s.db"
