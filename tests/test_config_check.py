"""`check-config --offline` and `config-schema`: checking a config away from the server it is meant for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from monitor.config import ConfigError, check_config_file, config_json_schema, load_config
from monitor.configtypes import ConfigError as BaseConfigError

REPO = Path(__file__).parent.parent
SHIPPED = sorted((REPO / "config").glob("*.yaml"))


class _EditorLoader(yaml.SafeLoader):
    """YAML as an editor's language server sees it: dates stay strings (no timestamp resolver)."""


_EditorLoader.yaml_implicit_resolvers = {
    first: [item for item in resolvers if item[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _schema_errors(document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(config_json_schema())
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_configs_pass_the_offline_check(path: Path) -> None:
    """config/demo.yaml and config/example.yaml pass `check-config --offline` with no env or secrets."""
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", "--offline", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"{path}: ok (")
    assert "offline" in result.stdout


def test_offline_check_reads_no_file_and_needs_no_environment(tmp_path: Path) -> None:
    """Missing secret, CA and calendar files and unset variables are not errors offline; online they are."""
    path = tmp_path / "config.yaml"
    path.write_text(
        """
api: {token_file: /nonexistent/token}
calendars: {calendars: {xa: {override_files: [/nonexistent/days.yaml]}}}
targets:
  - {name: db, type: tcp, host: "${DB_HOST}", port: "${DB_PORT}"}
  - {name: portal, type: http, url: "https://127.0.0.1/", tls: {ca_file: /nonexistent/ca.pem}}
"""
    )
    assert check_config_file(path, offline=True) == 2
    with pytest.raises(ConfigError) as caught:
        check_config_file(path)
    assert caught.value.errors == [
        "targets[0].host: environment variable DB_HOST is not set",
        "targets[0].port: environment variable DB_PORT is not set",
        "api.token_file: cannot read /nonexistent/token: No such file or directory",
        "targets[1].tls.ca_file: file not found: /nonexistent/ca.pem",
        "calendars.calendars.xa.override_files[0]: cannot read /nonexistent/days.yaml: "
        "No such file or directory",
    ]


def test_offline_check_accepts_a_store_url_file_it_does_not_read(tmp_path: Path) -> None:
    """`store.url_file` is not read offline (no URL to check); online a file not holding a PostgreSQL URL
    is refused with the path."""
    path = tmp_path / "config.yaml"
    url_file = tmp_path / "store-url"
    path.write_text(f"store: {{url_file: {url_file}}}\n")
    assert check_config_file(path, offline=True) == 0
    url_file.write_text("mysql://tthc@db/tthc\n")
    with pytest.raises(ConfigError) as caught:
        check_config_file(path)
    assert caught.value.errors == [
        "store.url: must start with postgresql:// (leave it out for the embedded SQLite store)"
    ]


def test_offline_check_still_catches_structure_types_and_references(tmp_path: Path) -> None:
    """Offline, a wrong type, an unknown key and an unknown reference are still errors, with their path."""
    path = tmp_path / "config.yaml"
    path.write_text(
        """
targets:
  - {name: db, type: tcp, host: "${DB_HOST}", port: many}
  - {name: portal, type: http, url: "http://127.0.0.1/", colour: red}
calendars: {default: nope}
"""
    )
    with pytest.raises(ConfigError) as caught:
        check_config_file(path, offline=True)
    assert caught.value.errors == [
        "targets[0].port: input should be a valid integer, unable to parse string as an integer",
        "targets[1].colour: unknown field",
        "calendars.default: unknown calendar 'nope'",
    ]


def test_offline_check_skips_only_values_that_hold_an_unset_variable(tmp_path: Path) -> None:
    """An unset `${PORT}` cannot be checked offline, but a bad literal port beside it still is."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "targets:\n"
        '  - {name: a, type: tcp, host: h, port: "${PORT}"}\n'
        "  - {name: b, type: tcp, host: h, port: 70000}\n"
    )
    with pytest.raises(BaseConfigError) as caught:
        check_config_file(path, offline=True)
    assert caught.value.errors == ["targets[1].port: input should be less than or equal to 65535"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_configs_validate_against_the_json_schema(path: Path) -> None:
    """What an editor checks with the schema agrees with the loader on the shipped configs."""
    assert _schema_errors(yaml.load(path.read_text(), _EditorLoader)) == []


def test_json_schema_flags_what_an_editor_should() -> None:
    """Unknown keys, a bad duration and a wrong type are schema errors; secrets may be `*_file`."""
    assert (
        _schema_errors(yaml.safe_load("api: {token_file: /run/secrets/t}\nstore: {raw_retention: 7d}")) == []
    )
    assert _schema_errors(yaml.safe_load("api: {colour: red}")) == [
        "api: Additional properties are not allowed ('colour' was unexpected)"
    ]
    assert _schema_errors(yaml.safe_load("store: {raw_retention: a week}")) != []
    assert _schema_errors(yaml.safe_load("scheduler: {max_concurrency: lots}")) != []


def test_config_schema_command_prints_the_schema() -> None:
    """`tthc-monitor config-schema` prints JSON an editor can load: the config's properties, UTF-8."""
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "config-schema"],
        capture_output=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0
    schema = json.loads(result.stdout.decode("utf-8"))
    assert schema == config_json_schema()
    assert {"targets", "store", "alerts", "dossiers", "logging"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_relative_paths_follow_the_config_as_the_user_sees_it(tmp_path: Path) -> None:
    """Through a symlink, `token_file: token` is read beside the link, not beside the link's target."""
    (tmp_path / "real").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "real" / "config.yaml").write_text("api: {token_file: token}\ntargets: []\n")
    (tmp_path / "etc" / "token").write_text("beside-the-link")
    (tmp_path / "etc" / "config.yaml").symlink_to(tmp_path / "real" / "config.yaml")
    config = load_config(tmp_path / "etc" / "config.yaml")
    assert config.api.token is not None and config.api.token.get_secret_value() == "beside-the-link"


def test_check_config_says_when_only_local_files_are_missing(tmp_path: Path) -> None:
    """Online errors that are all about missing files or variables end with a pointer to --offline."""
    path = tmp_path / "config.yaml"
    path.write_text("api: {token_file: /nonexistent/token}\ntargets: []\n")
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: invalid configuration:",
        "  api.token_file: cannot read /nonexistent/token: No such file or directory",
        "  (the rest is valid: these are files or environment variables missing on this machine; "
        "`check-config --offline` checks without them)",
    ]
