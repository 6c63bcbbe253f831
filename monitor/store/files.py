"""Private files: the store (and its -wal/-shm) holds officers' phone numbers, SMS texts and the rotated
Zalo refresh token, so it is created 0600 in a 0700 folder whatever the process umask; reports exported
from it are written 0600 too.

SQLite creates -wal and -shm with the mode of the database file, so creating the database file itself
0600 before SQLite opens it is what keeps them private; existing looser files are tightened on open.
A looser folder that already existed is not changed (it may be shared, e.g. /var/lib), only reported.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import structlog

__all__ = ["FILE_MODE", "FOLDER_MODE", "prepare_private_file", "tighten_private_file", "write_private_text"]

FILE_MODE = 0o600
FOLDER_MODE = 0o700
# SQLite's companions of a database file.
_COMPANIONS = ("-wal", "-shm", "-journal")

log = structlog.get_logger("monitor.store")


def prepare_private_file(path: Path) -> None:
    """Make `path`'s folder (0700 when created here) and the file itself (0600), ready for SQLite."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask; chmod is not.
        os.chmod(folder, FOLDER_MODE)
    else:
        folder_mode = stat.S_IMODE(folder.stat().st_mode)
        if folder_mode & 0o077:
            log.warning(
                "store_folder_not_private",
                folder=str(folder),
                mode=f"{folder_mode:04o}",
                hint=f"chmod 700 {folder} so only this account can list the store's files",
            )
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(descriptor)
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in _COMPANIONS)):
        tighten_private_file(candidate)


def write_private_text(path: Path, text: str) -> None:
    """Write an export (a report) 0600 whatever the umask: it is made from the store's data. An existing
    file is replaced in place and tightened."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), FILE_MODE)
        file.write(text)


def tighten_private_file(path: Path) -> None:
    """chmod 0600 a file that group or others could read; nothing when it is absent or already private."""
    with contextlib.suppress(FileNotFoundError):
        current = stat.S_IMODE(path.stat().st_mode)
        if current & 0o077:
            try:
                os.chmod(path, FILE_MODE)
            except PermissionError:
                log.warning("store_file_not_private", file=str(path), mode=f"{current:04o}")
            else:
                log.info("store_file_made_private", file=str(path), previous_mode=f"{current:04o}")
