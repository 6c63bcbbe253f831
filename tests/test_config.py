"""Config loading: one invalid fixture per error with its exact message, interpolation, secrets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import ConfigError, HttpTarget, TcpTarget, load_config, load_config_text
from monitor.durations import format_duration, parse_duration

FIXTURES = Path(__file__).parent / "fixtures" / "invalid"
REPO = Path(__file__).parent.parent


def _expected_errors(path: Path) -> list[str]:
    return [
        line.removeprefix("# error: ")
        for line in path.read_text().splitlines()
        if line.startswith("# error: ")
    ]


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.yaml")), ids=lambda path: path.stem)
def test_invalid_config_fixture(fixture: Path) -> None:
    """Each invalid fixture fails with exactly the message written at its top."""
    with pytest.raises(ConfigError) as caught:
        load_config(fixture, environ={})
    assert caught.value.errors == _expected_errors(fixture)


def test_every_error_is_reported_at_once() -> None:
    """A file with several problems reports all of them, each with its own path."""
    text = """
targets:
  - {name: a, type: http, url: "http://127.0.0.1/", expect: {status: [999]}}
  - {name: b, type: tcp, host: h}
  - {name: c, type: http, url: "http://127.0.0.1/", interval: 5x}
"""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, environ={})
    assert caught.value.errors == [
        "targets[0].expect.status: 999 is not an HTTP status code (100-599)",
        "targets[1].port: required field is missing",
        "targets[2].interval: invalid duration '5x': use a number and a unit, e.g. 30s, 5m, 2h, 14d",
    ]


def test_defaults_are_on_the_models() -> None:
    """An almost empty file gets the documented defaults."""
    config = load_config_text("targets: [{name: portal, type: http, url: 'http://127.0.0.1/'}]", environ={})
    target = config.targets[0]
    assert isinstance(target, HttpTarget)
    assert config.timezone == "Asia/Ho_Chi_Minh"
    assert config.listen == "127.0.0.1:9464"
    assert (target.interval, target.timeout) == (timedelta(seconds=30), timedelta(seconds=10))
    assert (target.failure_threshold, target.success_threshold) == (3, 2)
    assert (
        target.expect.status == ["2xx"] and target.expect.status_ok(204) and not target.expect.status_ok(301)
    )
    assert config.store.raw_retention == timedelta(days=7)
    assert config.store.minute_retention == timedelta(days=90)


def test_environment_interpolation_with_default() -> None:
    """`${VAR}` takes the environment's value and `${VAR:-x}` falls back to x."""
    text = """
targets:
  - {name: db, type: tcp, host: "${DB_HOST}", port: "${DB_PORT:-5432}"}
"""
    config = load_config_text(text, environ={"DB_HOST": "10.0.0.5"})
    target = config.targets[0]
    assert isinstance(target, TcpTarget)
    assert (target.host, target.port) == ("10.0.0.5", 5432)


def test_secret_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    """`token_file` is read relative to the config file and never shows in repr."""
    (tmp_path / "token").write_text("s3cret-token-value\n")
    (tmp_path / "config.yaml").write_text("api: {token_file: token}\n")
    config = load_config(tmp_path / "config.yaml", environ={})
    assert config.api.token is not None
    assert config.api.token.get_secret_value() == "s3cret-token-value"
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.model_dump())


def test_shipped_example_config_is_valid(tmp_path: Path) -> None:
    """config/example.yaml validates once its files and variables exist."""
    text = (REPO / "config" / "example.yaml").read_text()
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder")
    token = tmp_path / "token"
    token.write_text("example-token")
    text = text.replace("/etc/tthc-monitor/ca/vn-gov-ca.pem", str(ca))
    for secret in (
        "tthc-api-token",
        "opencps-password",
        "zalo-secret-key",
        "zalo-refresh-token",
        "esms-api-key",
        "esms-secret-key",
    ):
        text = text.replace(f"/run/secrets/{secret}", str(token))
    config = load_config_text(text, environ={"TTHC_OPENCPS_BASIC": "YWRtaW46eA=="})
    assert [target.name for target in config.targets] == ["portal", "motcua-app", "dossier-api", "motcua-db"]
    assert [source.name for source in config.dossiers.sources] == ["motcua"]
    assert [channel.name for channel in config.alerts.channels] == ["zalo", "sms"]
    assert config.alerts.directory.people[0].phone == "84912345678"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("2h", 7200), ("14d", 14 * 86400), ("1h30m", 5400), ("500ms", 0.5), (45, 45)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    """Durations in config accept units and compounds."""
    assert parse_duration(text).total_seconds() == seconds


def test_format_duration() -> None:
    """Durations print short and human."""
    assert [format_duration(value) for value in (45, 300, 5400, 90000)] == ["45s", "5m", "1h 30m", "1d 1h"]


def test_only_path_fields_are_resolved_as_paths(tmp_path: Path) -> None:
    """Free-form values under keys named `path`/`*_file` (request body, headers, query) are left alone;
    the model's path fields (store, csv, ca_file, override files, secret files) resolve against the file."""
    (tmp_path / "ca.pem").write_text("placeholder")
    (tmp_path / "pw").write_text("opencps-password\n")
    (tmp_path / "holidays.yaml").write_text("days_off: []\n")
    (tmp_path / "config.yaml").write_text(
        """
store: {path: data/monitor.db}
targets:
  - {name: portal, type: http, url: "https://127.0.0.1/", tls: {ca_file: ca.pem}}
calendars:
  calendars: {office: {override_files: [holidays.yaml]}}
dossiers:
  sources:
    - name: vendor
      type: json_api
      url: http://127.0.0.1:1/search
      method: POST
      query: {path: reports/open, report_file: x.csv}
      headers: {path: inbox/a, X-Key-File: k.txt}
      body: {path: hoso/mo, filter: {path: a/b, list: [{folder: c}]}, export_file: out.csv}
      fields: {code: code, received_at: received, due_at: due}
    - {name: exports, type: csv, path: exports, fields: {code: code, received_at: received, due_at: due}}
    - {name: motcua, type: opencps, base_url: "http://127.0.0.1:1/o/rest/v2", group_id: "1",
       username: u, password_file: pw}
"""
    )
    config = load_config(tmp_path / "config.yaml", environ={})
    vendor, exports, motcua = config.dossiers.sources
    assert vendor.body == {
        "path": "hoso/mo",
        "filter": {"path": "a/b", "list": [{"folder": "c"}]},
        "export_file": "out.csv",
    }
    assert vendor.headers == {"path": "inbox/a", "X-Key-File": "k.txt"}
    assert vendor.query == {"path": "reports/open", "report_file": "x.csv"}
    assert config.store.path == tmp_path / "data" / "monitor.db"
    assert exports.path == tmp_path / "exports"
    assert config.targets[0].tls.ca_file == tmp_path / "ca.pem"
    assert config.calendars.calendars["office"].override_files == [tmp_path / "holidays.yaml"]
    assert motcua.password.get_secret_value() == "opencps-password"
