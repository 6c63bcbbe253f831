"""The command line as a new engineer meets it: busy ports, unreadable files, bad stores, finding the store.

Each case runs the real `tthc-monitor` in a subprocess and checks what a user sees: the exit code, one
line on stderr and that it returns at once (no hang, no traceback). The store faults here are the SQLite
file's (corrupt, a folder, unopenable); PostgreSQL's (server unreachable, an older schema) and `migrate`
are in test_cli_store.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.cli import common
from monitor.cli.main import main
from monitor.store import SqliteStore
from tests.store_engines import StoreFactory

REPO = Path(__file__).parent.parent
# Well above a normal start-up, well below the old behaviour (a hang until SIGTERM).
QUICK_EXIT_SECONDS = 15.0


def tthc_monitor(*args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `python -m monitor ARGS` to completion; the result and how long it took."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return result, time.monotonic() - started


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A non-zero exit with exactly one `tthc-monitor: ...` line on stderr holding every needle (besides
    the daemon's own JSON log records, which `run` writes to stderr too)."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith('{"')]
    assert result.returncode != 0, result
    assert len(lines) == 1 and lines[0].startswith("tthc-monitor: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def _make_store(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.close()


def test_run_with_the_listen_port_in_use_exits_at_once(tmp_path: Path, busy_port: int) -> None:
    """`run` on a busy port prints one line naming the address and exits non-zero within seconds."""
    config = tmp_path / "config.yaml"
    config.write_text(f"listen: 127.0.0.1:{busy_port}\nstore: {{path: store.db}}\ntargets: []\n")
    result, took = tthc_monitor("run", "--config", str(config))
    assert_one_line_failure(result, f"127.0.0.1:{busy_port} is already in use", "listen in")
    assert took < QUICK_EXIT_SECONDS


@pytest.mark.parametrize("option", ["--listen", "--sim-port", "--sim-admin-port", "--sim-tls-port"])
def test_demo_with_a_port_in_use_exits_at_once(tmp_path: Path, busy_port: int, option: str) -> None:
    """`demo` with its own or the simulator's port busy names that port and option, then exits."""
    ports = {"--listen": "127.0.0.1:0", "--sim-port": "0", "--sim-admin-port": "0", "--sim-tls-port": "0"}
    ports[option] = f"127.0.0.1:{busy_port}" if option == "--listen" else str(busy_port)
    arguments = [item for pair in ports.items() for item in pair]
    result, took = tthc_monitor("demo", "--data", str(tmp_path / "data"), *arguments)
    assert_one_line_failure(result, f"127.0.0.1:{busy_port} is already in use", option)
    assert took < QUICK_EXIT_SECONDS


@pytest.mark.parametrize("option", ["--listen", "--admin-port", "--tls-port"])
def test_simulator_with_a_port_in_use_exits_at_once(busy_port: int, option: str) -> None:
    """`simulator` with one of its three ports busy names it and exits, like `demo`."""
    ports = {"--listen": "127.0.0.1:0", "--admin-port": "0", "--tls-port": "0"}
    ports[option] = f"127.0.0.1:{busy_port}" if option == "--listen" else str(busy_port)
    arguments = [item for pair in ports.items() for item in pair]
    result, took = tthc_monitor("simulator", *arguments)
    assert_one_line_failure(result, f"127.0.0.1:{busy_port} is already in use", option)
    assert took < QUICK_EXIT_SECONDS


def test_run_on_a_corrupt_store_names_it_and_exits_at_once(tmp_path: Path) -> None:
    """A store file that is not SQLite fails the start in one line saying what to do; no hang."""
    (tmp_path / "store.db").write_text("not a database, just text " * 100)
    config = tmp_path / "config.yaml"
    config.write_text("listen: 127.0.0.1:0\nstore: {path: store.db}\ntargets: []\n")
    result, took = tthc_monitor("run", "--config", str(config))
    assert_one_line_failure(result, str(tmp_path / "store.db"), "restore it from a backup")
    assert took < QUICK_EXIT_SECONDS


def test_run_with_a_store_it_cannot_open_exits_at_once(tmp_path: Path) -> None:
    """A store SQLite cannot open (here under /proc, unwritable even for root) is one line, no traceback."""
    config = tmp_path / "config.yaml"
    config.write_text("listen: 127.0.0.1:0\nstore: {path: /proc/tthc-monitor.db}\ntargets: []\n")
    result, took = tthc_monitor("run", "--config", str(config))
    assert_one_line_failure(result, "cannot open the store /proc/tthc-monitor.db", "read and write")
    assert took < QUICK_EXIT_SECONDS


def test_demo_with_a_corrupt_store_names_it(tmp_path: Path) -> None:
    """`demo` over a damaged ./data/tthc-monitor-demo.db says so before starting the simulator."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tthc-monitor-demo.db").write_bytes(b"\x00garbage" * 500)
    ports = ["--listen", "127.0.0.1:0", "--sim-port", "0", "--sim-admin-port", "0", "--sim-tls-port", "0"]
    result, took = tthc_monitor("demo", *ports, cwd=tmp_path)
    assert_one_line_failure(result, "--data:", "tthc-monitor-demo.db is not a tthc-monitor store", "backup")
    assert took < QUICK_EXIT_SECONDS


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfet\x00a\x00r\x00", "is UTF-16 text: save it as UTF-8"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "is not a text file (it holds NUL bytes)"),
        (b"targets: []\nname: Ph\xf2ng\n", "is not UTF-8 text (byte 0xf2 on line 2): save it as UTF-8"),
    ],
    ids=["utf-16", "binary", "latin-1"],
)
def test_check_config_on_a_file_that_is_not_utf8_text(tmp_path: Path, content: bytes, message: str) -> None:
    """check-config on a binary, UTF-16 or Latin-1 file answers one line naming the file."""
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    assert_one_line_failure(tthc_monitor("check-config", str(path))[0], str(path), message)


def test_check_config_on_a_folder(tmp_path: Path) -> None:
    """check-config given a folder says it cannot read it, in one line."""
    assert_one_line_failure(tthc_monitor("check-config", str(tmp_path))[0], f"cannot read {tmp_path}")


def test_explicitly_empty_target_list_is_accepted(tmp_path: Path) -> None:
    """`targets: []` says a config without targets is meant: ok, unlike an empty file."""
    path = tmp_path / "config.yaml"
    path.write_text("targets: []\n")
    result, _ = tthc_monitor("check-config", str(path))
    assert (result.returncode, result.stdout) == (0, f"{path}: ok (0 targets)\n")
    path.write_text("# nothing here yet\n")
    result, _ = tthc_monitor("check-config", str(path))
    assert result.returncode == 1 and "the file is empty" in result.stderr


def test_uptime_on_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    """`uptime --store README.md` names the file and what to do, in one line."""
    result, _ = tthc_monitor("uptime", "--store", str(REPO / "README.md"))
    assert_one_line_failure(result, str(REPO / "README.md"), "is not a tthc-monitor store", "backup")


@pytest.mark.parametrize("command", ["uptime", "dossiers", "alerts"])
def test_store_path_pointing_at_a_folder(tmp_path: Path, command: str) -> None:
    """A `store.path` naming a folder is one line naming the setting and a file to use instead."""
    (tmp_path / "data").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text("store: {path: data}\ntargets: []\n")
    result, _ = tthc_monitor(command, "--config", str(config))
    assert_one_line_failure(result, f"store.path in {config}", "is a folder", "data/tthc-monitor.db")


@pytest.mark.parametrize("command", [["run"], ["notify-test", "--person", "it-em"]], ids=["run", "notify"])
def test_writers_refuse_a_folder_as_store(tmp_path: Path, command: list[str]) -> None:
    """`run` and `notify-test` refuse a folder as the store before opening anything, in one line."""
    (tmp_path / "data").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        "listen: 127.0.0.1:0\nstore: {path: data}\ntargets: []\n"
        "alerts: {channels: [{type: log, name: log}],\n"
        "         directory: {people: [{id: it-em, roles: [it_oncall]}]}}\n"
    )
    result, took = tthc_monitor(*command, "--config", str(config))
    assert_one_line_failure(result, f"store.path in {config}", "is a folder")
    assert took < QUICK_EXIT_SECONDS


async def test_plain_uptime_after_the_demo_finds_the_demo_store(tmp_path: Path) -> None:
    """In the folder where the demo ran, `uptime` without options reads ./data/tthc-monitor-demo.db."""
    (tmp_path / "data").mkdir()
    await _make_store(tmp_path / "data" / "tthc-monitor-demo.db")
    result, _ = tthc_monitor("uptime", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "tthc-monitor: reading the demo's store ./data/tthc-monitor-demo.db\n"
    assert result.stdout.startswith("since 30d ago\nTARGET")
    result, _ = tthc_monitor("dossiers", cwd=tmp_path)
    assert (result.returncode, result.stdout.splitlines()[-1]) == (0, "0 dossier(s)")


async def test_plain_uptime_reads_the_config_in_the_current_folder(
    tmp_path: Path, stores: StoreFactory
) -> None:
    """A ./config.yaml wins over the demo's store: the store it names (SQLite file or PostgreSQL) is read."""
    store = stores.new(tmp_path / "mine.db")
    await store.open()
    await store.close()
    section = json.dumps(stores.config(tmp_path / "mine.db"))
    (tmp_path / "config.yaml").write_text(f"store: {section}\ntargets: []\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tthc-monitor-demo.db").write_text("not read")
    result, _ = tthc_monitor("uptime", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")


def test_no_store_anywhere_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no config and no demo store, the message lists every place looked at."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common, "DEFAULT_CONFIG", tmp_path / "etc" / "config.yaml")
    assert main(["uptime"]) == 1
    assert capsys.readouterr().err == (
        "tthc-monitor: no store found: looked for ./config.yaml, the demo's ./data/tthc-monitor-demo.db "
        f"and {tmp_path / 'etc' / 'config.yaml'}; pass --config FILE or --store FILE\n"
    )


@pytest.mark.parametrize("command", [["calendar", "check", "2026-02-16", "--config"], ["run", "--config"]])
def test_other_commands_answer_an_unreadable_config_in_one_line(tmp_path: Path, command: list[str]) -> None:
    """`calendar` and `run` given a UTF-16 config say so in the same one line as check-config."""
    path = tmp_path / "config.yaml"
    path.write_bytes("targets: []\n".encode("utf-16"))
    assert_one_line_failure(tthc_monitor(*command, str(path))[0], f"{path} is UTF-16 text: save it as UTF-8")


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`tthc-monitor uptime | head -1`: once the reader is gone the command stops without a traceback."""
    (tmp_path / "data").mkdir()
    asyncio.run(_make_store(tmp_path / "data" / "tthc-monitor-demo.db"))
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "uptime", "--store", "data/tthc-monitor-demo.db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    with process:
        assert process.stdout is not None
        process.stdout.close()
        _out, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr.decode()) == (141, "")
