"""What every `tthc-monitor` subcommand shares: error output, config loading, finding the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.config import Config, ConfigError, load_config

__all__ = ["DEFAULT_CONFIG", "add_store_arguments", "fail", "load_or_report", "resolve_store"]

DEFAULT_CONFIG = Path("/etc/tthc-monitor/config.yaml")


def fail(message: str, code: int = 1) -> int:
    """Print `tthc-monitor: message` to stderr and return the exit code."""
    print(f"tthc-monitor: {message}", file=sys.stderr)
    return code


def load_or_report(path: Path) -> Config | None:
    """The config at `path`, or None after printing every error with its YAML path."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: invalid configuration:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return None


def add_store_arguments(
    parser: argparse.ArgumentParser, config_help: str = "config file, to find the store"
) -> None:
    """`--config FILE | --store FILE` for commands that read the store (read-only, beside the daemon)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config", type=Path, default=None, help=f"{config_help} (default: {DEFAULT_CONFIG})"
    )
    source.add_argument("--store", type=Path, default=None, help="store file (instead of --config)")


def resolve_store(args: argparse.Namespace) -> tuple[Path, Config | None] | int:
    """The store file named by `--store`, or by the config's `store.path`; an exit code on failure."""
    config: Config | None = None
    if args.store is not None:
        path: Path = args.store
    else:
        config = load_or_report(args.config or DEFAULT_CONFIG)
        if config is None:
            return 1
        path = config.store.path
    if not path.exists():
        return fail(f"no store at {path}")
    return path, config
