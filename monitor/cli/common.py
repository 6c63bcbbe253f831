"""What every `tthc-monitor` subcommand shares: error output, config loading, finding the store,
checking that an address is free before anything starts."""

from __future__ import annotations

import argparse
import errno
import socket
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from monitor.config import Config, ConfigError, load_config
from monitor.configtypes import split_listen
from monitor.store.config import StoreConfig
from monitor.store.files import prepare_private_file

__all__ = [
    "DEFAULT_CONFIG",
    "DEMO_STORE",
    "LOCAL_CONFIG",
    "add_store_arguments",
    "address_problem",
    "fail",
    "first_line",
    "load_or_report",
    "report_config_error",
    "resolve_store",
    "store_config_of",
    "store_label",
    "store_open_problem",
    "store_path_problem",
]

DEFAULT_CONFIG = Path("/etc/tthc-monitor/config.yaml")
# Where `tthc-monitor demo` keeps its store (--data defaults to ./data).
DEMO_STORE = Path("data/tthc-monitor-demo.db")
# A config in the folder the command runs in, as a fresh clone or a test install has it.
LOCAL_CONFIG = Path("config.yaml")


def fail(message: str, code: int = 1) -> int:
    """Print `tthc-monitor: message` to stderr and return the exit code."""
    print(f"tthc-monitor: {message}", file=sys.stderr)
    return code


def first_line(exc: BaseException) -> str:
    """An error's first line: psycopg adds DETAIL and HINT lines that would break one-line output."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_or_report(path: Path) -> Config | None:
    """The config at `path`, or None after printing every error with its YAML path."""
    try:
        return load_config(path)
    except ConfigError as exc:
        report_config_error(path, exc)
        return None


def report_config_error(path: Path, exc: ConfigError) -> None:
    """Print a ConfigError: one line when the file cannot be read, else every error with its path."""
    if exc.unreadable:
        fail("; ".join(exc.errors))
        return
    print(f"{path}: invalid configuration:", file=sys.stderr)
    for error in exc.errors:
        print(f"  {error}", file=sys.stderr)


def add_store_arguments(
    parser: argparse.ArgumentParser, config_help: str = "config file, to find the store"
) -> None:
    """`--config FILE | --store FILE` for commands that read the store (read-only, beside the daemon)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"{config_help} (default: ./{LOCAL_CONFIG}, else the demo's store ./{DEMO_STORE}, "
        f"else {DEFAULT_CONFIG})",
    )
    source.add_argument("--store", type=Path, default=None, help="store file (instead of --config)")


def resolve_store(
    args: argparse.Namespace, *, must_exist: bool = True
) -> tuple[StoreConfig, Config | None] | int:
    """The store named by `--store FILE`, by `--config`'s `store:` section (the SQLite file or
    PostgreSQL), or found in the usual places; an exit code after one line on stderr on failure.

    With `must_exist=False` (`migrate`) a missing SQLite file is created, as the daemon would.
    """
    config: Config | None = None
    if args.store is not None:
        store = StoreConfig(path=args.store)
        named_by = "--store"
    else:
        config_path = args.config
        if config_path is None:
            # What is in the current folder first (a clone where the demo ran), then the installed one.
            if LOCAL_CONFIG.is_file():
                config_path = LOCAL_CONFIG
            elif DEMO_STORE.is_file():
                print(f"tthc-monitor: reading the demo's store ./{DEMO_STORE}", file=sys.stderr)
                return StoreConfig(path=DEMO_STORE), None
            elif DEFAULT_CONFIG.is_file():
                config_path = DEFAULT_CONFIG
            else:
                return fail(
                    f"no store found: looked for ./{LOCAL_CONFIG}, the demo's ./{DEMO_STORE} and "
                    f"{DEFAULT_CONFIG}; pass --config FILE or --store FILE"
                )
        config = load_or_report(config_path)
        if config is None:
            return 1
        store = config.store
        named_by = f"store.path in {config_path}"
    if store.engine == "sqlite":
        # PostgreSQL is checked by connecting: its errors name the server and say why.
        problem = store_path_problem(store.path, named_by, must_exist=must_exist)
        if problem is not None:
            return fail(problem)
    return store, config


def store_config_of(store: Path | StoreConfig) -> StoreConfig:
    """A `store:` section for a store given as a SQLite file or as a section already."""
    return store if isinstance(store, StoreConfig) else StoreConfig(path=store)


def store_label(store: StoreConfig) -> str:
    """Where the store is, for output: the SQLite file, or the PostgreSQL URL without its password."""
    from monitor.store.open import store_from_config

    # The engine's own description, as the daemon's logs and the store's errors give it.
    return store_from_config(store).engine.describe()


def store_path_problem(path: Path, named_by: str, *, must_exist: bool = True) -> str | None:
    """Why `path` cannot be the store file, or None. `named_by` says where the user wrote it.

    With `must_exist=False` (commands that write: run, demo, notify-test) the file is opened once here,
    as the daemon will, creating it and its folder if needed: an unopenable or corrupt store is then one
    line before anything starts, not a failure half-way through starting.
    """
    if path.is_dir():
        return f"{named_by}: {path} is a folder; name the store file in it, e.g. {path / 'tthc-monitor.db'}"
    if must_exist:
        if not path.exists():
            return f"{named_by}: no store at {path} (the daemon creates it when it first runs)"
        return None
    try:
        # Created private (folder 0700, file 0600) as the store itself would: it will hold secrets.
        prepare_private_file(path)
    except OSError as exc:
        if not path.parent.is_dir():
            return f"{named_by}: cannot create the folder of {path}: {exc.strerror or exc}"
        # The file itself: SQLite's own attempt below says best what is wrong.
    try:
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("PRAGMA schema_version").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"{named_by}: {store_open_problem(path, exc)}"
    return None


def store_open_problem(path: Path, exc: sqlite3.DatabaseError) -> str:
    """What SQLite's refusal to open `path` means for the user."""
    if isinstance(exc, sqlite3.OperationalError):
        return (
            f"cannot open the store {path} ({exc}): check that this user may read and write it and its folder"
        )
    return (
        f"the store {path} is not a tthc-monitor store ({exc}): restore it from a backup, or move it away "
        "and the daemon starts a new one"
    )


def address_problem(address: str, what: str) -> str | None:
    """Why the daemon or simulator could not listen on `address` (`host:port`), or None when it can.

    Binding here, before anything opens, turns a busy port into one line instead of a half-started
    process. Port 0 (any free port) always works.
    """
    host, port = split_listen(address)
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {address} ({what}): {exc.strerror}"
    family, kind, proto, _name, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As aiohttp binds: SO_REUSEADDR, so a port in TIME_WAIT after a restart is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{address} is already in use ({what}): stop what listens there or choose another"
            return f"cannot listen on {address} ({what}): {exc.strerror or exc}"
    return None
