"""Deployment files: the Dockerfile, constraints.txt, the container's default config, the systemd unit."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from structlog.testing import capture_logs

from monitor.config import ConfigError, load_config
from monitor.daemon import Daemon
from monitor.durations import parse_duration
from monitor.scheduler import SchedulerConfig

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
UNIT = REPO / "config" / "systemd" / "tthc-monitor.service"
INSTALLED = "/opt/tthc-monitor/bin/tthc-monitor"
# What the README tells `docker run --stop-timeout` and compose `stop_grace_period` to use.
DOCUMENTED_STOP_TIMEOUT = 30


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def index_of(steps: list[tuple[str, str]], keyword: str, contains: str) -> int:
    for index, (found, rest) in enumerate(steps):
        if found == keyword and contains in rest:
            return index
    raise AssertionError(f"no {keyword} containing {contains!r} in the Dockerfile")


def test_dockerfile_pins_the_base_and_caches_dependencies_before_the_source() -> None:
    """One base pinned by exact tag and digest; constraints installed in a layer before the source COPY."""
    steps = instructions()
    bases = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(bases) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", bases[0]), bases[0]
    constraints = index_of(steps, "COPY", "constraints.txt")
    install = index_of(steps, "RUN", "--requirement /tmp/constraints.txt")
    first_source = min(index_of(steps, "COPY", "pyproject.toml"), index_of(steps, "COPY", "monitor"))
    assert constraints < install < first_source
    assert "pip install --no-deps ." in steps[index_of(steps, "RUN", "pip install --no-deps .")][1]


def test_dockerfile_runs_unprivileged_with_tzdata_healthcheck_and_sigterm() -> None:
    """tzdata, a non-root USER before the entrypoint, HEALTHCHECK on /healthz, STOPSIGNAL SIGTERM."""
    steps = instructions()
    assert "tzdata" in steps[index_of(steps, "RUN", "apt-get install")][1]
    users = [index for index, (keyword, _) in enumerate(steps) if keyword == "USER"]
    assert users and steps[users[-1]][1] not in ("root", "0", "0:0")
    assert users[-1] < index_of(steps, "ENTRYPOINT", "tthc-monitor")
    assert "http://127.0.0.1:9464/healthz" in steps[index_of(steps, "HEALTHCHECK", "CMD")][1]
    assert ("STOPSIGNAL", "SIGTERM") in steps
    assert ("EXPOSE", "9464") in steps
    default = steps[index_of(steps, "COPY", "config/container.yaml")][1]
    assert default.endswith("/etc/tthc-monitor/config.yaml")
    assert "/etc/tthc-monitor/config.yaml" in steps[index_of(steps, "CMD", "run")][1]


def test_constraints_pin_every_runtime_dependency_exactly() -> None:
    """Every dependency of pyproject.toml appears in constraints.txt as name==version that satisfies it."""
    pins: dict[str, str] = {}
    for number, line in enumerate((REPO / "constraints.txt").read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)", line.strip())
        assert match, f"constraints.txt line {number} is not name==version: {line!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert dependencies
    for text in dependencies:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement.specifier}"
        )


def container_config(tmp_path: Path, *, token: bool) -> Path:
    """config/container.yaml with its secret and store moved under tmp_path (the image's paths)."""
    secret = tmp_path / "tthc-api-token"
    secret.write_text("s3cret-token\n")
    text = (REPO / "config" / "container.yaml").read_text()
    text = text.replace("/run/secrets/tthc-api-token", str(secret)).replace("/data/", f"{tmp_path}/")
    if not token:
        text = text.replace(f"  token_file: {secret}\n", "").replace("api:\n", "")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_container_config_listens_everywhere_only_with_a_token(tmp_path: Path) -> None:
    """The image's default config listens on 0.0.0.0 with a token file; without the token it is refused."""
    config = load_config(container_config(tmp_path, token=True))
    assert config.listen == "0.0.0.0:9464"
    assert config.api.token is not None and config.api.token.get_secret_value() == "s3cret-token"
    assert config.store.path == tmp_path / "tthc-monitor.db"
    assert config.scheduler.shutdown_grace.total_seconds() < DOCUMENTED_STOP_TIMEOUT
    with pytest.raises(ConfigError) as caught:
        load_config(container_config(tmp_path, token=False))
    assert caught.value.errors == [
        "api: listen 0.0.0.0:9464 can be reached from other machines: set api.token_file (or api.token),"
        " listen on 127.0.0.1 behind a proxy, or set api.allow_remote_without_token: true"
    ]


@pytest.mark.parametrize(
    ("listen", "refused"),
    [
        ("127.0.0.1:9464", False),
        ("127.0.0.2:9464", False),
        ("localhost:9464", False),
        ("[::1]:9464", False),
        ("0.0.0.0:9464", True),
        ("[::]:9464", True),
        (":9464", True),
        ("10.10.1.5:9464", True),
        ("monitor.example.gov.vn:9464", True),
    ],
)
def test_only_loopback_addresses_may_go_without_a_token(tmp_path: Path, listen: str, refused: bool) -> None:
    """Any address other machines may reach needs api.token; loopback ones do not."""
    path = tmp_path / "config.yaml"
    path.write_text(f'listen: "{listen}"\n')
    if refused:
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert [error.split(" can be")[0] for error in caught.value.errors] == [f"api: listen {listen}"]
        path.write_text(f'listen: "{listen}"\napi: {{token: abc}}\n')
    assert load_config(path).listen == listen


async def test_an_open_api_must_be_meant_and_is_warned_about_at_start(tmp_path: Path) -> None:
    """allow_remote_without_token lets a tokenless API listen beyond loopback, and every start warns."""
    path = tmp_path / "config.yaml"
    path.write_text(
        'listen: "0.0.0.0:0"\napi: {allow_remote_without_token: true}\n'
        f"store: {{path: {tmp_path / 's.db'}}}\n"
    )
    config = load_config(path)
    assert config.api.open_to_network(config.listen)
    daemon = Daemon(config)
    with capture_logs() as logs:
        await daemon.start()
        await daemon.stop()
    warnings = [entry for entry in logs if entry["event"] == "api_open_without_token"]
    assert [entry["listen"] for entry in warnings] == ["0.0.0.0:0"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed")
def test_the_image_builds_and_runs(tmp_path: Path) -> None:
    """docker build succeeds and the image's tthc-monitor answers `version` as the non-root user."""
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"the docker client is installed but no Docker engine answers: {info.stderr.strip()}")
    tag = "tthc-monitor:test-deployment"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(REPO)], capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", tag, "-c", "id -u && tthc-monitor version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    uid, version = run.stdout.split("\n", 1)
    assert uid != "0" and version.startswith("tthc-monitor ")


def unit_directives() -> dict[str, list[str]]:
    """`Section.Key` -> values in order (a key may repeat, e.g. SystemCallFilter)."""
    directives: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line!r}"
        directives.setdefault(f"{section}.{key}", []).append(value)
    return directives


def test_systemd_unit_is_hardened_and_stops_after_the_grace() -> None:
    """The unit confines the daemon, reloads with SIGHUP and waits longer than shutdown_grace on stop."""
    found = unit_directives()

    def one(key: str) -> str:
        values = found.get(f"Service.{key}")
        assert values, f"Service.{key} is missing"
        return values[-1]

    assert one("ExecStart") == f"{INSTALLED} run --config /etc/tthc-monitor/config.yaml"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Restart") == "on-failure"
    assert parse_duration(one("TimeoutStopSec")) > SchedulerConfig().shutdown_grace
    assert one("User") not in ("root", "0") or one("DynamicUser") == "yes"
    expected = {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "ReadWritePaths": "/var/lib/tthc-monitor",
        "StateDirectory": "tthc-monitor",
        "UMask": "0077",
    }
    assert {key: one(key) for key in expected} == expected
    assert found["Install.WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify reports nothing, with ExecStart pointed at this checkout's tthc-monitor."""
    executable = Path(sys.executable).parent / "tthc-monitor"
    assert executable.is_file(), "install the project (pip install -e .) to get the tthc-monitor script"
    unit = tmp_path / "tthc-monitor.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(executable)))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
