"""An online, consistent copy of the store file, taken while the daemon keeps writing (`tthc-monitor backup`).

SQLite's backup API copies the file in steps of `step_pages` pages with a pause between steps, so the
copy never hogs the disk. On its own, a stepped backup restarts from the first page whenever another
connection commits, and the daemon commits every `store.flush_interval`: the backup would never finish.
So the copy reads through one read transaction held from the first step to the last. In WAL mode a
reader does not block the writer; it only keeps the WAL from being checkpointed past the reader's snapshot,
so the WAL grows during the copy and is reclaimed after. The source is opened read-only: the backup takes
no write lock and never checkpoints, so the daemon's commits do not wait for it.

The copy is written to a temporary file (mode 0600: it holds tokens such as the Zalo refresh token) in the
destination's folder, switched to a single-file journal mode, checked with `PRAGMA integrity_check`, synced
and renamed over the destination, so a reader of the destination sees the old backup or the new one, never
half of one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.store.base import StoreError
from monitor.store.config import StoreConfig

__all__ = [
    "DEFAULT_PAUSE",
    "DEFAULT_STEP_PAGES",
    "POSTGRES_BACKUP",
    "BackupReport",
    "backup_source",
    "backup_store",
]

# What `tthc-monitor backup` answers for a PostgreSQL store: the server has its own tools for that.
POSTGRES_BACKUP = (
    "the store is on PostgreSQL: back it up with the server's tools (pg_dump, or continuous archiving);"
    " `tthc-monitor backup` copies the embedded SQLite file only"
)

# 256 pages of 4 KiB = 1 MiB per step: a few milliseconds of reading on an ordinary disk.
DEFAULT_STEP_PAGES = 256
DEFAULT_PAUSE = 0.005
_SIDECARS = ("-journal", "-wal", "-shm")


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What one backup wrote and how long it took; `longest_step` is the longest single copy step."""

    path: Path
    pages: int
    size_bytes: int
    seconds: float
    steps: int
    longest_step: float


def backup_source(store: StoreConfig) -> Path:
    """The SQLite file to back up for the `store:` section; StoreError (one line) for PostgreSQL."""
    if store.engine == "postgresql":
        raise StoreError(POSTGRES_BACKUP)
    return store.path


def backup_store(
    source: Path,
    destination: Path,
    *,
    step_pages: int = DEFAULT_STEP_PAGES,
    pause: float = DEFAULT_PAUSE,
    busy_timeout: float = 5.0,
) -> BackupReport:
    """Copy the store at `source` to `destination` (replaced atomically); StoreError names what failed."""
    if step_pages < 1:
        raise StoreError(f"step pages must be at least 1, not {step_pages}")
    if pause < 0:
        raise StoreError(f"pause must not be negative, not {pause}")
    _check_paths(source, destination)
    owner = source.stat()
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    started = time.monotonic()
    try:
        _create_private(temporary)
        pages, steps, longest = _copy(source, temporary, step_pages, pause, busy_timeout)
        _check_copy(temporary)
        _sync_file(temporary)
        os.replace(temporary, destination)
        _sync_folder(destination.parent)
    except sqlite3.Error as exc:
        raise StoreError(f"backup of {source} failed: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"cannot write the backup {destination}: {exc.strerror or exc}") from exc
    finally:
        _give_sidecars_to(source, owner)
        for path in (temporary, *(Path(f"{temporary}{suffix}") for suffix in _SIDECARS)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return BackupReport(
        path=destination,
        pages=pages,
        size_bytes=destination.stat().st_size,
        seconds=time.monotonic() - started,
        steps=steps,
        longest_step=longest,
    )


def _check_paths(source: Path, destination: Path) -> None:
    if not source.is_file():
        raise StoreError(f"no store at {source}")
    if destination.is_dir():
        raise StoreError(f"{destination} is a folder: name the backup file")
    if not destination.parent.is_dir():
        raise StoreError(f"folder {destination.parent} does not exist")
    resolved = destination.resolve()
    if resolved == source.resolve() or any(
        resolved == Path(f"{source.resolve()}{suffix}") for suffix in _SIDECARS
    ):
        raise StoreError(f"{destination} is the store itself: choose another file")


def _give_sidecars_to(source: Path, owner: os.stat_result) -> None:
    """Hand -wal/-shm files this run created back to the store's owner.

    A read-only reader of a WAL file creates -wal and -shm when the daemon is stopped and cannot remove
    them. Created by root (a backup from cron or sudo), they would keep the service user's daemon from
    opening its own store.
    """
    if os.geteuid() != 0:
        return
    for suffix in ("-wal", "-shm"):
        sidecar = Path(f"{source}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            found = sidecar.stat()
            if (found.st_uid, found.st_gid) != (owner.st_uid, owner.st_gid):
                os.chown(sidecar, owner.st_uid, owner.st_gid)


def _create_private(path: Path) -> None:
    # Created 0600 before any byte is written, whatever the umask: the store holds secrets.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)


def _copy(
    source: Path, target: Path, step_pages: int, pause: float, busy_timeout: float
) -> tuple[int, int, float]:
    """Copy page by page inside one read transaction on the source; (pages, steps, longest step)."""
    reader = sqlite3.connect(
        f"{source.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=busy_timeout
    )
    writer = sqlite3.connect(target, isolation_level=None)
    try:
        # The copy is a temporary file: a crash leaves it to be deleted, so it needs no rollback journal.
        writer.execute("PRAGMA journal_mode = OFF")
        reader.execute("BEGIN")
        # BEGIN is deferred: this read takes the snapshot every step will copy from.
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        steps = 0
        longest = 0.0
        total = 0
        step_started = time.monotonic()

        def paced(_status: int, remaining: int, page_count: int) -> None:
            nonlocal steps, longest, total, step_started
            steps += 1
            total = page_count
            longest = max(longest, time.monotonic() - step_started)
            if remaining:
                time.sleep(pause)
            step_started = time.monotonic()

        reader.backup(writer, pages=step_pages, progress=paced)
        reader.execute("COMMIT")
        # A single self-contained file: restoring it needs no -wal beside it (the daemon turns WAL back on).
        writer.execute("PRAGMA journal_mode = DELETE")
    finally:
        reader.close()
        writer.close()
    return total, steps, longest


def _check_copy(path: Path) -> None:
    check = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        problems = [row[0] for row in check.execute("PRAGMA integrity_check").fetchall()]
    finally:
        check.close()
    if problems != ["ok"]:
        raise StoreError(f"the copy failed its integrity check: {'; '.join(problems[:5])}")


def _sync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk.
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
