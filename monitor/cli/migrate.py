"""`tthc-monitor migrate`: bring the store's schema up to this program's version, as a release step.

The daemon migrates at start unless `store.auto_migrate: false`; sites that upgrade the schema on their
own schedule (several replicas on one PostgreSQL, a change window) run this instead, once. On PostgreSQL
it takes the same advisory lock as a starting daemon, so it never migrates beside one. `--check` only
reports: exit 1 while migrations are pending, for deploy scripts.
"""

from __future__ import annotations

import argparse
import asyncio

from monitor.cli.common import add_store_arguments, fail, resolve_store
from monitor.store.config import StoreConfig
from monitor.store.migrations import MIGRATIONS, schema_version
from monitor.store.open import store_from_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "migrate", help="apply the store's missing schema migrations (SQLite file or PostgreSQL)"
    )
    add_store_arguments(parser, "config file, to find the store")
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing: exit 1 when migrations are pending, 0 when the store is up to date",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    found = resolve_store(args, must_exist=args.check)
    if isinstance(found, int):
        return found
    store, _config = found
    if args.check:
        return asyncio.run(_check(store))
    return asyncio.run(_migrate(store))


async def _migrate(store_config: StoreConfig) -> int:
    engine = store_from_config(store_config).engine
    connection, applied = await engine.open_writer(MIGRATIONS, migrate=True)
    try:
        version = await schema_version(connection)
    finally:
        await engine.close(connection)
    where = engine.describe()
    if not applied:
        print(f"{where}: up to date (version {version})")
    else:
        versions = ", ".join(str(number) for number in applied)
        print(f"{where}: applied migration(s) {versions}; now at version {version}")
    return 0


async def _check(store_config: StoreConfig) -> int:
    engine = store_from_config(store_config).engine
    connection = await engine.open_reader()
    try:
        version = await schema_version(connection) or 0
    finally:
        await engine.close(connection)
    where = engine.describe()
    latest = MIGRATIONS[-1].version
    if version > latest:
        return fail(f"{where}: store schema version {version} is newer than this program ({latest})")
    pending = [migration.version for migration in MIGRATIONS if migration.version > version]
    if pending:
        versions = ", ".join(str(number) for number in pending)
        return fail(
            f"{where}: at version {version}; pending migration(s) {versions}: run `tthc-monitor migrate`"
        )
    print(f"{where}: up to date (version {version})")
    return 0
