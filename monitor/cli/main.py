"""The `tthc-monitor` command line."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from monitor import __version__
from monitor.cli.common import (
    DEFAULT_CONFIG,
    DEMO_STORE,
    add_store_arguments,
    address_problem,
    fail,
    first_line,
    load_or_report,
    report_config_error,
    resolve_store,
    store_open_problem,
    store_path_problem,
)
from monitor.config import Config, ConfigError, check_config_file, config_json_schema, load_config
from monitor.durations import format_duration, parse_duration
from monitor.store.availability import Span
from monitor.store.base import StoreError
from monitor.store.config import StoreConfig
from monitor.store.engine import DB_ERRORS

__all__ = ["build_parser", "main"]

DEMO_USERNAME = "admin"

# Commands whose parser and handler live in their own module (calendar, dossiers, alerts, notify-test,
# backup, report, migrate).
_EXTERNAL_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tthc-monitor",
        description="Monitoring and alerting for Vietnamese one-stop offices (bộ phận một cửa).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config file (default: %(default)s)")

    demo = commands.add_parser(
        "demo", help="run the built-in dossier-system simulator and the daemon against it"
    )
    demo.add_argument("--listen", default="127.0.0.1:9464", help="daemon address (default: %(default)s)")
    demo.add_argument("--data", type=Path, default=Path("data"), help="store folder (default: ./data)")
    demo.add_argument("--sim-port", type=int, default=9480, help="simulator port (default: %(default)s)")
    demo.add_argument("--sim-admin-port", type=int, default=9481, help="simulator fault switch port")
    demo.add_argument("--sim-tls-port", type=int, default=9482, help="simulator HTTPS port")

    sim = commands.add_parser("simulator", help="run only the built-in dossier-system simulator")
    from monitor.simulator.runner import add_arguments as add_simulator_arguments

    add_simulator_arguments(sim)

    check = commands.add_parser("check-config", help="validate a config file; print every error")
    check.add_argument("file", type=Path)
    check.add_argument(
        "--offline",
        action="store_true",
        help="check structure, types and references only: read no secret or CA file, need no "
        "environment variable (for a config written on another machine)",
    )

    commands.add_parser(
        "config-schema", help="print the JSON Schema of the config file, for editors' YAML checking"
    )

    uptime = commands.add_parser("uptime", help="uptime, incidents and latency per target, from the store")
    add_store_arguments(uptime)
    uptime.add_argument("--target", default=None, help="only this target")
    window = uptime.add_mutually_exclusive_group()
    window.add_argument("--since", default="30d", help="window, e.g. 1d, 7d, 30d (default: %(default)s)")
    window.add_argument("--month", default=None, help="a calendar month in the office's zone, e.g. 2026-10")

    commands.add_parser("version", help="print the version")

    from monitor.cli import alerts as cli_alerts
    from monitor.cli import backup as cli_backup
    from monitor.cli import calendar as cli_calendar
    from monitor.cli import dossiers as cli_dossiers
    from monitor.cli import migrate as cli_migrate
    from monitor.cli import report as cli_report

    for module in (cli_calendar, cli_dossiers, cli_alerts, cli_backup, cli_report, cli_migrate):
        before = set(commands.choices)
        module.add_parser(commands)
        for name in set(commands.choices) - before:
            _EXTERNAL_COMMANDS[name] = module.run
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "run": _run,
        "demo": _demo,
        "simulator": _simulator,
        "check-config": _check_config,
        "config-schema": _config_schema,
        "uptime": _uptime,
        "version": lambda _args: _print(f"tthc-monitor {__version__}"),
    }.get(args.command) or _EXTERNAL_COMMANDS[args.command]
    try:
        code = handler(args)
        # Inside the guard: with output piped into `head`, the pipe may close before this last write.
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tthc-monitor alerts | head`: the reader has gone; say nothing more, and keep Python's exit
        # flush from failing on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except StoreError as exc:
        return fail(str(exc))
    except DB_ERRORS as exc:
        # psycopg's message may run over several lines (DETAIL, HINT): the first says what failed.
        return fail(f"the store cannot be read: {first_line(exc)}")
    except Exception as exc:
        # The last guard of "no user sees a traceback"; TTHC_MONITOR_DEBUG=1 shows it for a bug report.
        if os.environ.get("TTHC_MONITOR_DEBUG"):
            raise
        return fail(
            f"unexpected error: {type(exc).__name__}: {exc} "
            "(run again with TTHC_MONITOR_DEBUG=1 for details and report it)"
        )


def _print(text: str) -> int:
    print(text)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    try:
        targets = check_config_file(args.file, offline=args.offline)
    except ConfigError as exc:
        report_config_error(args.file, exc)
        if not args.offline and not exc.unreadable and _valid_offline(args.file):
            print(
                "  (the rest is valid: these are files or environment variables missing on this machine;"
                " `check-config --offline` checks without them)",
                file=sys.stderr,
            )
        return 1
    checked = " (offline: files and environment variables not checked)" if args.offline else ""
    print(f"{args.file}: ok ({targets} targets){checked}")
    if not args.offline:
        _warn_if_saturated(args.file)
    return 0


def _warn_if_saturated(path: Path) -> None:
    """Valid, but hanging targets alone could take every probe slot: say so before it is deployed."""
    from monitor.scheduler import scheduler_saturation

    config = load_config(path)
    saturation = scheduler_saturation(config.targets, config.scheduler.max_concurrency)
    if saturation > 1:
        print(
            f"{path}: warning: scheduler saturation {saturation:.2f} (sum of timeout/interval over"
            f" targets is above scheduler.max_concurrency {config.scheduler.max_concurrency})",
            file=sys.stderr,
        )


def _valid_offline(path: Path) -> bool:
    try:
        check_config_file(path, offline=True)
    except ConfigError:
        return False
    return True


def _config_schema(_args: argparse.Namespace) -> int:
    print(json.dumps(config_json_schema(), indent=2, ensure_ascii=False))
    return 0


def _run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 1
    problem = address_problem(config.listen, f"listen in {args.config}")
    if problem is None and config.store.engine == "sqlite":
        problem = store_path_problem(config.store.path, f"store.path in {args.config}", must_exist=False)
    if problem is not None:
        return fail(problem)
    return asyncio.run(_serve(config, args.config))


async def _serve(config: Config, path: Path | None) -> int:
    from monitor.daemon import Daemon
    from monitor.logging import configure_logging

    configure_logging(config.logging.level, config.logging.format, config.logging.timestamps, config.zone)
    daemon = Daemon(config, config_path=path)
    try:
        await daemon.run()
    except (OSError, StoreError, *DB_ERRORS) as exc:
        await _stop_quietly(daemon)
        return fail(f"cannot start: {_start_error(exc, config)}")
    return 0


def _start_error(exc: BaseException, config: Config) -> str:
    if isinstance(exc, sqlite3.DatabaseError):
        return store_open_problem(config.store.path, exc)
    return first_line(exc)


async def _stop_quietly(daemon: object) -> None:
    """Undo a half-done start (open store, writer thread) so the process can exit at once."""
    stop = getattr(daemon, "stop", None)
    if stop is None:
        return
    try:
        await stop()
    except Exception as exc:
        print(f"tthc-monitor: while stopping: {exc}", file=sys.stderr)


def demo_config_path() -> Path:
    return Path(str(resources.files("monitor") / "demo" / "demo.yaml"))


def _demo(args: argparse.Namespace) -> int:
    return asyncio.run(_run_demo(args))


async def _run_demo(args: argparse.Namespace) -> int:
    from monitor.daemon import Daemon
    from monitor.logging import configure_logging
    from monitor.simulator import Simulator
    from monitor.simulator.server import DEFAULT_PASSWORD

    configure_logging()
    for address, what in (
        (args.listen, "--listen, the daemon"),
        (f"127.0.0.1:{args.sim_port}", "--sim-port, the simulator"),
        (f"127.0.0.1:{args.sim_admin_port}", "--sim-admin-port, the simulator's fault switch"),
        (f"127.0.0.1:{args.sim_tls_port}", "--sim-tls-port, the simulator's HTTPS"),
    ):
        try:
            problem = address_problem(address, what)
        except ValueError as exc:
            return fail(f"{what}: {exc}", 2)
        if problem is not None:
            return fail(problem)
    data = args.data.resolve()
    if data.exists() and not data.is_dir():
        return fail(f"--data: {data} is a file; the demo needs a folder for its store")
    problem = store_path_problem(data / DEMO_STORE.name, "--data", must_exist=False)
    if problem is not None:
        return fail(problem)
    simulator = Simulator(state_dir=data)
    try:
        await simulator.start(
            host="127.0.0.1", port=args.sim_port, admin_port=args.sim_admin_port, tls_port=args.sim_tls_port
        )
    except OSError as exc:
        await _stop_quietly(simulator)
        return fail(f"cannot start the simulator: {exc}")
    # demo.yaml reads the simulator's addresses from these, so any free ports work.
    os.environ.update(
        TTHC_SIM_PORTAL_URL=simulator.portal_url,
        TTHC_SIM_APP_URL=simulator.app_url,
        TTHC_SIM_API_BASE=simulator.api_base,
        TTHC_SIM_HTTPS_URL=simulator.https_url,
        TTHC_SIM_CA_FILE=str(simulator.ca_file),
        TTHC_SIM_HOST="127.0.0.1",
        TTHC_SIM_PORT=str(simulator.port),
        TTHC_SIM_PASSWORD=DEFAULT_PASSWORD,
        TTHC_SIM_BASIC=base64.b64encode(f"{DEMO_USERNAME}:{DEFAULT_PASSWORD}".encode()).decode(),
    )
    path = demo_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        await simulator.stop()
        return fail(f"the shipped demo config is invalid: {exc}")
    config = config.model_copy(
        update={
            "listen": args.listen,
            "store": config.store.model_copy(update={"path": data / DEMO_STORE.name}),
        }
    )
    daemon = Daemon(config, config_path=None)
    try:
        await daemon.start()
    except (OSError, StoreError, sqlite3.Error) as exc:
        await _stop_quietly(daemon)
        await simulator.stop()
        return fail(f"cannot start: {_start_error(exc, config)}")
    base = daemon.base_url
    print(
        "\n".join(
            [
                "tthc-monitor demo is running (Ctrl-C to stop)",
                f"  metrics:      {base}/metrics",
                f"  API:          {base}/api/v1/targets",
                f"  incidents:    {base}/api/v1/incidents",
                f"  dossiers:     {base}/api/v1/units",
                f"  alerts:       {base}/api/v1/alerts   (sent to the log channel: a dry run)",
                f"  simulator:    {simulator.portal_url}",
                f"  fault switch: {simulator.admin_url}/faults"
                '   e.g. curl -X POST -d \'{"fault": "down", "scope": "all"}\' <that URL>',
            ]
        ),
        flush=True,
    )
    import signal

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    await done.wait()
    await daemon.stop()
    await simulator.stop()
    return 0


def _simulator(args: argparse.Namespace) -> int:
    from monitor.configtypes import split_listen
    from monitor.simulator.runner import run_from_args

    try:
        host, port = split_listen(args.listen)
    except ValueError as exc:
        return fail(f"--listen: {exc}", 2)
    # The runner's defaults: the admin and TLS listeners follow a fixed public port.
    admin = args.admin_port if args.admin_port is not None else (port + 1 if port else 0)
    tls = args.tls_port if args.tls_port is not None else (port + 2 if port else 0)
    for address, what in (
        (args.listen, "--listen, the simulator"),
        (f"{host}:{admin}", "--admin-port, the fault switch"),
        (f"{host}:{tls}", "--tls-port, the simulator's HTTPS"),
    ):
        if (problem := address_problem(address, what)) is not None:
            return fail(problem)
    return run_from_args(args)


def _uptime(args: argparse.Namespace) -> int:
    found = resolve_store(args)
    if isinstance(found, int):
        return found
    store, config = found
    now = datetime.now(UTC)
    if args.month is not None:
        from monitor.reports.sla import parse_month

        try:
            span = parse_month(args.month).span(config.zone if config else ZoneInfo("Asia/Ho_Chi_Minh"))
        except ValueError as exc:
            return fail(f"--month: {exc}", 2)
        start, end, label = span.start, span.end, f"month {args.month}"
    else:
        try:
            window = parse_duration(args.since)
        except ValueError as exc:
            return fail(f"--since: {exc}", 2)
        start, end, label = now - window, now, f"since {format_duration(window)} ago"
    from monitor.maintenance import planned_maintenance

    # Planned maintenance is known only from the config; with --store alone none is left out.
    planned = planned_maintenance(config.targets, start, end, config.zone) if config else {}
    return asyncio.run(_print_uptime(store, start, end, planned, label, args.target))


async def _print_uptime(
    store_config: StoreConfig,
    start: datetime,
    end: datetime,
    planned: dict[str, list[Span]],
    label: str,
    target: str | None,
) -> int:
    from monitor.store.open import open_readonly_store

    store = await open_readonly_store(store_config)
    try:
        reports = await store.uptime_all(start, end, planned)
    finally:
        await store.close()
    if target is not None:
        reports = [report for report in reports if report.target == target]
        if not reports:
            return fail(f"no data for target {target!r}")
    header = (
        f"{'TARGET':<28} {'UPTIME %':>9} {'INCIDENTS':>9} {'DOWNTIME':>10} {'UNMONITORED':>11}"
        f" {'P50 ms':>8} {'P95 ms':>8}"
    )
    print(label)
    print(header)
    for report in reports:
        uptime = "-" if report.uptime_ratio is None else f"{report.uptime_ratio * 100:.3f}"
        p50 = "-" if report.latency_p50 is None else f"{report.latency_p50 * 1000:.0f}"
        p95 = "-" if report.latency_p95 is None else f"{report.latency_p95 * 1000:.0f}"
        unmonitored = format_duration(report.unmonitored_seconds)
        print(
            f"{report.target:<28} {uptime:>9} {report.incidents:>9} "
            f"{format_duration(report.downtime_seconds):>10} {unmonitored:>11} {p50:>8} {p95:>8}"
        )
    return 0
