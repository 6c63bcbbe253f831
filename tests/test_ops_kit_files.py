"""The operations kit's files: promtool checks and unit tests of the rules, a runbook entry and
Vietnamese annotations for every alert, consistent Grafana provisioning, and the compose example."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promtool import run_promtool

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
PROMETHEUS = CONFIG / "prometheus"
GRAFANA = CONFIG / "grafana"
COMPOSE = CONFIG / "docker-compose.example.yml"
REPLICAS_COMPOSE = CONFIG / "docker-compose.replicas.example.yml"
RULE_FILES = sorted(PROMETHEUS.glob("*.rules.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
_ENV_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")
# Compose paths the operator provides (secrets, extra CAs); never in git.
_OPERATOR_PROVIDED = ("TTHC_SECRETS_DIR", "TTHC_CA_DIR")


def _alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def _runbook() -> dict[str, str]:
    """README.md's runbook entries: `#### AlertName` heading → the entry's text."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Runbook\n", 1)[1].split("\n## ", 1)[0]
    entries = re.split(r"^#### (\w+)\n", section, flags=re.MULTILINE)[1:]
    return dict(zip(entries[::2], entries[1::2], strict=True))


async def test_promtool_accepts_the_rules_and_the_example_config() -> None:
    """`promtool check rules` passes on the rule files and `check config` on the scrape config example."""
    code, output = await run_promtool("check", "rules", *map(str, RULE_FILES))
    assert code == 0, output
    code, output = await run_promtool("check", "config", str(PROMETHEUS / "prometheus.example.yml"))
    assert code == 0, output


async def test_promtool_unit_tests_of_the_rules_pass() -> None:
    """`promtool test rules` passes on the alerting and recording rule tests."""
    assert len(RULE_TESTS) == 2, RULE_TESTS
    code, output = await run_promtool("test", "rules", *map(str, RULE_TESTS))
    assert code == 0, output


def test_every_alert_is_unit_tested_both_firing_and_quiet() -> None:
    """Each alerting rule has a promtool case where it fires and one where it does not."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - fires == set(), "never tested firing"
    assert names - quiet == set(), "never tested quiet"


def test_every_alert_has_vietnamese_annotations_and_a_runbook_entry() -> None:
    """summary and description in Vietnamese, a severity, and a README runbook entry it links to."""
    runbook = _runbook()
    for rule in _alert_rules():
        name = rule["alert"]
        annotations = rule["annotations"]
        for key in ("summary", "description"):
            assert re.search(r"[ăâđêôơưạ-ỹ]", annotations[key]), f"{name}.{key} is not Vietnamese"
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert annotations["runbook_url"] == f"README.md#{name.lower()}", name
        entry = runbook.get(name)
        assert entry is not None, f"README.md has no runbook entry for {name}"
        for part in ("What it means", "What to check", "What to do"):
            assert f"**{part}**" in entry, f"runbook entry {name} lacks {part!r}"
    assert set(runbook) == {rule["alert"] for rule in _alert_rules()}, "runbook entries without an alert"


def test_grafana_provisioning_and_dashboards_agree() -> None:
    """Stable unique uids, every query through the datasource variable, defaulting to the provisioned one."""
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/tthc-prometheus.yml").read_text())
    datasource_uid = provisioned["datasources"][0]["uid"]
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard["uid"] == path.stem, "the uid is the file name, so links survive edits"
        uids.add(dashboard["uid"])
        variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["current"]["value"] == datasource_uid
        panel_ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(panel_ids) == len(set(panel_ids)), f"{path.name}: duplicate panel ids"
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["title"] and panel["description"], f"{path.name}: panel {panel['id']}"
            assert panel["datasource"]["uid"] == "${datasource}", f"{path.name}: {panel['title']}"
            assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])
    assert len(uids) == len(DASHBOARDS) == 3


def _compose(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _volume_source(volume: str) -> str:
    """The host side of `source:target[:mode]`, where the source may hold `${VAR:-default}`."""
    start = volume.index("}") + 1 if volume.startswith("${") else 0
    return volume[:start] + volume[start:].split(":", 1)[0]


def _host_path(text: str) -> tuple[Path, str | None]:
    """A compose path with `${VAR:-default}` at its default, and the variable it came from, if any."""
    match = _ENV_DEFAULT.search(text)
    resolved = _ENV_DEFAULT.sub(lambda m: m.group(2), text)
    return (COMPOSE.parent / resolved).resolve(), match.group(1) if match else None


def _check_mounts_and_secrets(compose: dict[str, Any]) -> None:
    """Bind mounts point at shipped files (or operator-provided folders); secrets come from secrets/."""
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = _volume_source(volume)
            if source in compose.get("volumes", {}):
                continue
            path, variable = _host_path(source)
            if variable in _OPERATOR_PROVIDED:
                continue
            assert path.exists(), f"{volume}: {path} does not exist"
    for secret in compose["secrets"].values():
        path, variable = _host_path(secret["file"])
        assert variable == "TTHC_SECRETS_DIR" and path.parent == (CONFIG / "secrets").resolve()


def test_compose_example_mounts_files_that_exist_and_every_secret_the_config_reads() -> None:
    """Bind mounts point at shipped files; the secrets are the ones config/example.yaml reads."""
    compose = _compose()
    assert set(compose["services"]) == {"tthc-monitor", "prometheus", "grafana"}
    _check_mounts_and_secrets(compose)
    read = set(re.findall(r"/run/secrets/([\w-]+)", (CONFIG / "example.yaml").read_text(encoding="utf-8")))
    assert read <= set(compose["services"]["tthc-monitor"]["secrets"])
    grafana_secret = compose["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert grafana_secret.removeprefix("/run/secrets/") in compose["services"]["grafana"]["secrets"]
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.example.yml").read_text(encoding="utf-8"))
    [target] = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert (
        target
        == "tthc-monitor:" + compose["services"]["tthc-monitor"]["environment"]["TTHC_LISTEN"].split(":")[1]
    )
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/tthc.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts


def test_replicas_compose_example_runs_two_members_of_one_config_on_one_postgresql() -> None:
    """Two members with the same config, store secret and listen address; PostgreSQL's password is the
    secret the store URL is written from; every secret config/replicas.example.yaml reads is given."""
    compose = _compose(REPLICAS_COMPOSE)
    assert "name" not in compose  # Compose v1 rejects a top-level name
    services = compose["services"]
    assert set(services) == {"postgres", "tthc-a", "tthc-b"}
    _check_mounts_and_secrets(compose)
    members = [services["tthc-a"], services["tthc-b"]]
    for key in ("volumes", "secrets", "environment", "image"):
        assert members[0][key] == members[1][key], key
    [config_mount] = [volume for volume in members[0]["volumes"] if volume.endswith("/config.yaml:ro")]
    config_path, _variable = _host_path(_volume_source(config_mount))
    assert config_path == (CONFIG / "replicas.example.yaml").resolve()
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    assert config["store"]["url_file"] == "/run/secrets/store-url" and "path" not in config["store"]
    read = set(re.findall(r"/run/secrets/([\w-]+)", config_path.read_text(encoding="utf-8")))
    assert read == set(members[0]["secrets"])
    database = services["postgres"]
    assert database["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password"
    assert database["secrets"] == ["postgres-password"]
    assert members[0]["depends_on"]["postgres"]["condition"] == "service_healthy"


async def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) where present, else Debian's `docker-compose` (v1), else None."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = await asyncio.create_subprocess_exec(
            docker, "compose", "version", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        if await probe.wait() == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


@pytest.mark.parametrize("compose", [COMPOSE, REPLICAS_COMPOSE], ids=lambda path: path.name)
async def test_docker_compose_accepts_the_example(tmp_path: Path, compose: Path) -> None:
    """`docker compose config` resolves the example, with every secret and the CA folder provided."""
    command = await _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed: checked as YAML only")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in _compose(compose)["secrets"]:
        (secrets / name).write_text("not-a-real-secret\n")
    (tmp_path / "ca").mkdir()
    process = await asyncio.create_subprocess_exec(
        *command,
        "-f",
        str(compose),
        "config",
        "--quiet",
        env={
            **os.environ,
            "TTHC_SECRETS_DIR": str(secrets),
            "TTHC_CA_DIR": str(tmp_path / "ca"),
            "TTHC_OPENCPS_BASIC": "dGVzdDp0ZXN0",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
