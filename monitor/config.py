"""The whole configuration, composed of each section's own settings, and its loading: `${ENV}`
interpolation, `*_file` secrets relative to the file, and precise errors.

Every model forbids unknown keys and carries its defaults. `load_config` returns a `Config` or raises
`ConfigError` holding every problem at once, each prefixed with its YAML path
(`targets[2].expect.status: ...`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from alerts.config import AlertsConfig
from monitor.calendar import CalendarsConfig
from monitor.configtypes import (
    CONFIG_DIR,
    ConfigError,
    Duration,
    PositiveDuration,
    StrictModel,
    format_validation_error,
    join_path,
    parse_yaml,
    register_union_tags,
    secret_file_fields,
    split_listen,
)
from monitor.dossiers.config import SOURCE_TYPES, DossiersConfig
from monitor.logging import LoggingConfig
from monitor.scheduler import SchedulerConfig
from monitor.store.config import StoreConfig
from monitor.targets import (
    HttpExpect,
    HttpTarget,
    MaintenanceWindow,
    Target,
    TcpTarget,
    TlsConfig,
    zone_named,
)
from monitor.web.config import ApiConfig, StatusConfig

__all__ = [
    "ApiConfig",
    "Config",
    "ConfigError",
    "Duration",
    "HttpExpect",
    "HttpTarget",
    "LoggingConfig",
    "MaintenanceWindow",
    "PositiveDuration",
    "SchedulerConfig",
    "StoreConfig",
    "StrictModel",
    "Target",
    "TcpTarget",
    "TlsConfig",
    "load_config",
    "load_config_text",
    "register_union_tags",
    "secret_file_fields",
    "split_listen",
]


register_union_tags(*SOURCE_TYPES)


class Config(StrictModel):
    """The whole configuration file."""

    timezone: str = "Asia/Ho_Chi_Minh"
    listen: str = "127.0.0.1:9464"
    # Validated also when absent, so that a reachable `listen` without a token is caught.
    api: ApiConfig = Field(default_factory=ApiConfig, validate_default=True)
    status: StatusConfig = StatusConfig()
    store: StoreConfig = StoreConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    logging: LoggingConfig = LoggingConfig()
    targets: list[Target] = Field(default_factory=list)
    calendars: CalendarsConfig = CalendarsConfig()
    dossiers: DossiersConfig = DossiersConfig()
    alerts: AlertsConfig = AlertsConfig()

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        zone_named(value)
        return value

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("api")
    @classmethod
    def _token_when_reachable(cls, api: ApiConfig, info: ValidationInfo) -> ApiConfig:
        # The API lists dossier codes, units and people's ids: an address other machines can reach
        # (0.0.0.0 in a container) is only safe behind a token.
        listen = info.data.get("listen")
        if api.token is None and listen is not None and not _loopback(split_listen(listen)[0]):
            raise ValueError(
                f"listen {listen} can be reached from other machines: set api.token_file (or api.token),"
                " or listen on 127.0.0.1 behind a proxy"
            )
        return api

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[HttpTarget | TcpTarget]) -> list[HttpTarget | TcpTarget]:
        seen: set[str] = set()
        for target in targets:
            if target.name in seen:
                raise ValueError(f"duplicate target name {target.name!r}")
            seen.add(target.name)
        return targets

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


# --- loading --------------------------------------------------------------------------------------

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, path: str, errors: list[str], environ: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: _interpolate(value, join_path(path, key), errors, environ) for key, value in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(value, f"{path}[{index}]", errors, environ) for index, value in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            errors.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _ENV_REFERENCE.sub(substitute, node)
    return node


def load_config_text(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Parse and validate YAML text; raise ConfigError listing every problem."""
    try:
        raw = parse_yaml(text)
    except ValueError as exc:
        raise ConfigError([f"<yaml>: {exc}"], source) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["<root>: the file must be a mapping of settings"], source)
    errors: list[str] = []
    raw = _interpolate(raw, "", errors, dict(os.environ if environ is None else environ))
    try:
        # Relative paths are resolved by the fields that hold paths (ConfigPath, `*_file` secrets).
        context = {CONFIG_DIR: base_dir} if base_dir is not None else None
        config = Config.model_validate(raw, context=context)
    except ValidationError as exc:
        errors.extend(format_validation_error(exc))
        raise ConfigError(errors, source) from None
    if errors:
        raise ConfigError(errors, source)
    return config


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}"], str(path)) from exc
    return load_config_text(text, source=str(path), base_dir=path.resolve().parent, environ=environ)
