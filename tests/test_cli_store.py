"""The command line on the store the config names, on both engines: `tthc-monitor migrate` (and
`--check`), the read commands through `--config`, the daemon refusing an older schema without
`store.auto_migrate`, and PostgreSQL's faults (server unreachable) in one line that never shows the
password.

Each case runs the real `tthc-monitor` in a subprocess, as test_cli.py does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from monitor.store.migrations import MIGRATIONS
from tests.crash_helpers import DaemonProcess
from tests.store_engines import StoreFactory
from tests.test_cli import QUICK_EXIT_SECONDS, assert_one_line_failure, tthc_monitor

LATEST = MIGRATIONS[-1].version
# The schema a site has before upgrading: every migration but the last two.
OLDER = LATEST - 2
PASSWORD = "pg-Pa55word-7c1e"
# Nothing listens on port 1 of the loopback: "connection refused" at once.
UNREACHABLE = f"postgresql://tthc:{PASSWORD}@127.0.0.1:1/tthc"


def _write_config(path: Path, store: dict[str, object], **extra: object) -> Path:
    config = {"listen": "127.0.0.1:0", "logging": {"format": "json"}, "store": store, "targets": [], **extra}
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


async def _older_store(stores: StoreFactory, path: Path) -> None:
    """A store left at schema version OLDER, as the previous release would have left it."""
    engine = stores.new(path).engine
    connection, applied = await engine.open_writer(MIGRATIONS[:OLDER], migrate=True)
    await engine.close(connection)
    assert applied == list(range(1, OLDER + 1))


def _with_password(url: str) -> str:
    """The test server's URL with a password in it (the test server trusts loopback, so any works)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    netloc = f"{user}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_migrate_applies_what_is_missing_then_says_up_to_date(
    tmp_path: Path, stores: StoreFactory
) -> None:
    """`migrate --check` exits 1 naming the pending versions; `migrate` applies them; then both say up to
    date."""
    await _older_store(stores, tmp_path / "store.db")
    config = _write_config(tmp_path / "config.json", stores.config(tmp_path / "store.db"))
    pending = ", ".join(str(version) for version in range(OLDER + 1, LATEST + 1))

    check, _ = tthc_monitor("migrate", "--check", "--config", str(config))
    assert_one_line_failure(
        check, f"at version {OLDER}; pending migration(s) {pending}", "tthc-monitor migrate"
    )

    applied, _ = tthc_monitor("migrate", "--config", str(config))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip().endswith(f": applied migration(s) {pending}; now at version {LATEST}")

    again, _ = tthc_monitor("migrate", "--config", str(config))
    assert (again.returncode, again.stdout.strip().endswith(f": up to date (version {LATEST})")) == (0, True)
    check, _ = tthc_monitor("migrate", "--check", "--config", str(config))
    assert (check.returncode, check.stdout.strip().endswith(f": up to date (version {LATEST})")) == (0, True)
    assert stores.query(tmp_path / "store.db", "SELECT max(version) FROM schema_version") == [(LATEST,)]


async def test_migrate_creates_a_new_store(tmp_path: Path, stores: StoreFactory) -> None:
    """On an empty database (or no SQLite file yet) `migrate` applies every migration, as a first start
    would; `--check` before it reports every one pending."""
    config = _write_config(tmp_path / "config.json", stores.config(tmp_path / "new.db"))
    if stores.postgres:
        check, _ = tthc_monitor("migrate", "--check", "--config", str(config))
        assert_one_line_failure(check, "at version 0; pending migration(s) 1, 2")
    else:
        check, _ = tthc_monitor("migrate", "--check", "--config", str(config))
        assert_one_line_failure(check, "no store at", "new.db")
    result, _ = tthc_monitor("migrate", "--config", str(config))
    assert result.returncode == 0, result.stderr
    everything = ", ".join(str(version) for version in range(1, LATEST + 1))
    assert f": applied migration(s) {everything}; now at version {LATEST}" in result.stdout


async def test_run_without_auto_migrate_refuses_an_older_schema(tmp_path: Path, stores: StoreFactory) -> None:
    """With store.auto_migrate false the daemon does not start on an older schema: one line telling to run
    `tthc-monitor migrate`, a non-zero exit, the schema left as it was."""
    await _older_store(stores, tmp_path / "store.db")
    store = {**stores.config(tmp_path / "store.db"), "auto_migrate": False}
    config = _write_config(tmp_path / "config.json", store)
    result, took = tthc_monitor("run", "--config", str(config))
    assert_one_line_failure(
        result,
        f"cannot start: store schema version {OLDER} is older than this program ({LATEST})",
        "run `tthc-monitor migrate`",
    )
    assert took < QUICK_EXIT_SECONDS
    assert stores.query(tmp_path / "store.db", "SELECT max(version) FROM schema_version") == [(OLDER,)]


async def test_uptime_reads_the_store_the_config_names(tmp_path: Path, stores: StoreFactory) -> None:
    """`uptime --config` reads the configured store, on either engine, with the incident written to it."""
    now = datetime.now(UTC)
    async with stores.new(tmp_path / "store.db") as store:
        incident = await store.open_incident("cong-dich-vu-cong", now - timedelta(hours=2), "timeout", "")
        await store.close_incident(incident, now - timedelta(hours=1))
    config = _write_config(tmp_path / "config.json", stores.config(tmp_path / "store.db"))
    result, _ = tthc_monitor("uptime", "--config", str(config), "--since", "1d")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("cong-dich-vu-cong"))
    assert row.split()[2] == "1", "one incident"


async def test_backup_of_a_postgresql_store_points_to_pg_dump(tmp_path: Path) -> None:
    """`backup` with a PostgreSQL config refuses in one line naming pg_dump, without the password."""
    config = _write_config(tmp_path / "config.json", {"url": UNREACHABLE})
    result, _ = tthc_monitor("backup", str(tmp_path / "copy.db"), "--config", str(config))
    line = assert_one_line_failure(result, "the store is on PostgreSQL", "pg_dump")
    assert PASSWORD not in result.stdout + result.stderr and "Traceback" not in line
    assert not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["migrate", "--check"],
        ["uptime"],
        ["dossiers"],
        ["alerts"],
        ["report", "--month", "2026-10"],
        ["run"],
    ],
    ids=lambda command: "-".join(command),
)
def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path, command: list[str]) -> None:
    """Every command on a PostgreSQL store it cannot reach: one line naming the server (no password) and
    its reason, at once, no traceback."""
    config = _write_config(tmp_path / "config.json", {"url": UNREACHABLE})
    result, took = tthc_monitor(*command, "--config", str(config))
    assert_one_line_failure(result, "cannot connect to postgresql://tthc@127.0.0.1:1/tthc", "refused")
    assert PASSWORD not in result.stdout + result.stderr
    assert took < QUICK_EXIT_SECONDS


@pytest.mark.parametrize(
    "command",
    [["run"], ["migrate"], ["migrate", "--check"], ["uptime"], ["alerts"]],
    ids=lambda command: "-".join(command),
)
def test_a_server_that_never_answers_fails_within_the_connect_timeout(
    tmp_path: Path, silent_port: int, command: list[str]
) -> None:
    """A PostgreSQL host that accepts and never answers: the daemon's start and the CLI commands fail
    after store.connect_timeout, in one line naming the server (no password), not hang."""
    url = f"postgresql://tthc:{PASSWORD}@127.0.0.1:{silent_port}/tthc"
    config = _write_config(tmp_path / "config.json", {"url": url, "connect_timeout": "2s"})
    result, took = tthc_monitor(*command, "--config", str(config))
    assert_one_line_failure(
        result,
        f"cannot connect to postgresql://tthc@127.0.0.1:{silent_port}/tthc",
        "no answer within 2s (store.connect_timeout)",
    )
    assert PASSWORD not in result.stdout + result.stderr
    # It waited for the timeout (no refusal came), and not much longer: one attempt, then the exit.
    assert 2.0 <= took < 2.0 + QUICK_EXIT_SECONDS / 2, took


def test_a_connect_timeout_below_libpqs_floor_is_refused(tmp_path: Path) -> None:
    """store.connect_timeout under 2s (libpq waits at least that) is a config error naming the key."""
    config = _write_config(tmp_path / "config.json", {"url": UNREACHABLE, "connect_timeout": "500ms"})
    result, _ = tthc_monitor("check-config", str(config))
    assert result.returncode == 1
    assert "store.connect_timeout: must be at least 2s" in result.stderr, result.stderr


def test_check_config_never_shows_the_store_password(tmp_path: Path) -> None:
    """check-config of a valid and of an invalid PostgreSQL store section: no password in its output."""
    good = _write_config(tmp_path / "good.json", {"url": UNREACHABLE, "schema": "tthc"})
    result, _ = tthc_monitor("check-config", str(good))
    assert result.returncode == 0, result.stderr
    bad = _write_config(tmp_path / "bad.json", {"url": UNREACHABLE, "path": str(tmp_path / "x.db")})
    refused, _ = tthc_monitor("check-config", str(bad))
    assert refused.returncode == 1 and "store.url: given with store.path" in refused.stderr
    wrong = _write_config(tmp_path / "wrong.json", {"url": UNREACHABLE.replace("postgresql", "mysql")})
    refused_scheme, _ = tthc_monitor("check-config", str(wrong))
    assert (
        refused_scheme.returncode == 1 and "store.url: must start with postgresql://" in refused_scheme.stderr
    )
    for output in (result, refused, refused_scheme):
        assert PASSWORD not in output.stdout + output.stderr


async def test_the_store_password_never_leaves_the_daemon(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A daemon on PostgreSQL with a password in store.url at debug level: neither the password nor the
    URL appear in its logs, /api/v1, /metrics or /status (PostgreSQL only: SQLite has no password)."""
    stores = StoreFactory("postgresql", request.node.nodeid)
    url = _with_password(stores.url or "")
    store = {"url": url, "schema": stores.schema(tmp_path / "store.db")}
    config = _write_config(tmp_path / "config.json", store, logging={"format": "json", "level": "debug"})
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    bodies: list[str] = []
    try:
        base_url = await daemon.start(start_timeout=30)
        async with aiohttp.ClientSession() as session:
            for path in (
                "/metrics",
                "/status",
                "/readyz",
                "/api/v1/targets",
                "/api/v1/incidents",
                "/api/v1/alerts",
            ):
                async with session.get(f"{base_url}{path}") as response:
                    bodies.append(await response.text())
    finally:
        await daemon.kill()
        stores.drop()
    everything = "\n".join([daemon.log(), *bodies])
    assert "store_migrated" in daemon.log(), "the daemon ran and logged its store"
    assert PASSWORD not in everything and url not in everything


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["dossiers"], "0 dossier(s)"),
        (["alerts"], "(no alerts in that window)"),
        (["report", "--month", "2026-10"], "tháng 10/2026"),
    ],
    ids=["dossiers", "alerts", "report"],
)
async def test_read_commands_read_the_store_the_config_names(
    tmp_path: Path, stores: StoreFactory, command: list[str], expected: str
) -> None:
    """`dossiers`, `alerts` and `report` with `--config` read the configured store, on either engine."""
    async with stores.new(tmp_path / "store.db"):
        pass
    config = _write_config(tmp_path / "config.json", stores.config(tmp_path / "store.db"))
    result, _ = tthc_monitor(*command, "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_every_form_of_the_store_password_is_a_secret() -> None:
    """config_secrets() holds the store URL's password as written, URL-decoded, and given as a parameter;
    a URL without a password stays readable (it names the server in errors)."""
    from monitor.config import load_config_text
    from monitor.config_secrets import config_secrets

    def secrets(url: str) -> list[str]:
        return config_secrets(
            load_config_text(json.dumps({"store": {"url": url}, "targets": []}), environ={})
        )

    encoded = "postgresql://tthc:p%40ss%2Fw0rd@db:5432/tthc"
    assert {encoded, "p%40ss%2Fw0rd", "p@ss/w0rd"} <= set(secrets(encoded))
    parameter = "postgresql://tthc@db/tthc?password=qW3rty-9&sslpassword=k3y-Pass"
    assert {parameter, "qW3rty-9", "k3y-Pass"} <= set(secrets(parameter))
    assert "postgresql://tthc@db/tthc" not in secrets("postgresql://tthc@db/tthc")
