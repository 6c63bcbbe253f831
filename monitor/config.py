"""The whole configuration, composed of each section's own settings, and its loading: `${ENV}`
interpolation, `*_file` secrets relative to the file, and precise errors.

Every model forbids unknown keys and carries its defaults. `load_config` returns a `Config` or raises
`ConfigError` holding every problem at once, each prefixed with its YAML path
(`targets[2].expect.status: ...`).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue

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
    offline_validation,
    parse_yaml,
    register_union_tags,
    secret_file_fields,
    split_listen,
)
from monitor.dossiers.config import SOURCE_TYPES, DossiersConfig
from monitor.durations import format_duration
from monitor.logging import LoggingConfig
from monitor.replicas.config import ReplicasConfig
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
    "check_config_file",
    "config_json_schema",
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
    # Used only with a PostgreSQL store (store.url): replicas sharing the work.
    replicas: ReplicasConfig = ReplicasConfig()
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
        if listen is not None and api.open_to_network(listen) and not api.allow_remote_without_token:
            raise ValueError(
                f"listen {listen} can be reached from other machines: set api.token_file (or api.token),"
                " listen on 127.0.0.1 behind a proxy, or set api.allow_remote_without_token: true"
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


# --- loading --------------------------------------------------------------------------------------

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(
    node: Any, path: str, errors: list[str] | None, environ: dict[str, str], unresolved: set[str]
) -> Any:
    """`${VAR}` and `${VAR:-default}` replaced from `environ`. The YAML path of every value holding an
    unset variable is added to `unresolved`, and an error to `errors` (None: an offline check)."""
    if isinstance(node, dict):
        return {
            key: _interpolate(value, join_path(path, key), errors, environ, unresolved)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            _interpolate(value, f"{path}[{index}]", errors, environ, unresolved)
            for index, value in enumerate(node)
        ]
    if isinstance(node, str) and "${" in node:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            unresolved.add(path or "<root>")
            if errors is not None:
                errors.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _ENV_REFERENCE.sub(substitute, node)
    return node


def _depends_on(error: str, paths: set[str]) -> bool:
    """An error at (or below) a value that held an unset `${VAR}`: unknowable offline."""
    location = error.partition(": ")[0]
    return any(location == path or location.startswith((f"{path}.", f"{path}[")) for path in paths)


def load_config_text(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Parse and validate YAML text; raise ConfigError listing every problem."""
    config, _raw = _validate(text, source, base_dir, environ, offline=False)
    assert config is not None
    return config


def _validate(
    text: str, source: str, base_dir: Path | None, environ: dict[str, str] | None, *, offline: bool
) -> tuple[Config | None, dict[str, Any]]:
    """The Config and the interpolated mapping, or ConfigError. Offline (structure, types and
    references only; no file read; unset environment variables allowed) the Config is None when a
    value holding an unset variable kept it from being built, though nothing else was wrong."""
    try:
        raw = parse_yaml(text)
    except ValueError as exc:
        raise ConfigError([f"<yaml>: {exc}"], source) from exc
    if raw is None:
        # Almost always a mistake (wrong file, truncated copy): a daemon watching nothing looks healthy.
        raise ConfigError(
            ["<root>: the file is empty (no settings); write `targets: []` if no targets is meant"], source
        )
    if not isinstance(raw, dict):
        raise ConfigError(["<root>: the file must be a mapping of settings"], source)
    errors: list[str] = []
    unresolved: set[str] = set()
    environ = dict(os.environ if environ is None else environ)
    raw = _interpolate(raw, "", None if offline else errors, environ, unresolved)
    config: Config | None = None
    # Relative paths are resolved by the fields that hold paths (ConfigPath, `*_file` secrets), never by
    # key names: a `path:` inside a request body is text.
    context = {CONFIG_DIR: base_dir} if base_dir is not None else None
    try:
        if offline:
            with offline_validation():
                config = Config.model_validate(raw, context=context)
        else:
            config = Config.model_validate(raw, context=context)
    except ValidationError as exc:
        # A value whose variable is unset has its own error (or, offline, cannot be checked).
        errors.extend(error for error in format_validation_error(exc) if not _depends_on(error, unresolved))
        if not errors:
            if not offline:
                raise ConfigError(format_validation_error(exc), source) from None
            # Offline, only values holding unset variables failed: valid as far as it can be checked.
            return None, raw
    if errors:
        raise ConfigError(errors, source)
    return config, raw


def check_config_file(path: str | Path, *, offline: bool = False) -> int:
    """Validate a config file as `check-config` does; the number of targets, or ConfigError."""
    path = Path(path)
    config, raw = _validate(_read_text(path), str(path), _folder_of(path), None, offline=offline)
    if config is not None:
        return len(config.targets)
    targets = raw.get("targets")
    return len(targets) if isinstance(targets, list) else 0


def _folder_of(path: Path) -> Path:
    """The folder relative paths in the file are read from: where the user sees the file, symlinks not
    followed (config/demo.yaml links into the package; a Kubernetes ConfigMap mount links into a
    timestamped folder)."""
    return Path(os.path.abspath(path)).parent


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, or ConfigError saying why it is not (folder, binary, UTF-16...)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            [f"cannot read {path}: {exc.strerror or exc}"], str(path), unreadable=True
        ) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError([f"{path} is UTF-16 text: save it as UTF-8"], str(path), unreadable=True)
    if b"\x00" in data:
        raise ConfigError([f"{path} is not a text file (it holds NUL bytes)"], str(path), unreadable=True)
    try:
        # utf-8-sig: Windows editors write a BOM; it is not part of the YAML.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): save it as UTF-8"],
            str(path),
            unreadable=True,
        ) from None


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file."""
    path = Path(path)
    return load_config_text(_read_text(path), source=str(path), base_dir=_folder_of(path), environ=environ)


class _ConfigSchema(GenerateJsonSchema):
    """JSON Schema as the YAML is written: durations as `30s`, secrets also as `<name>_file`."""

    def timedelta_schema(self, schema: Any) -> JsonSchemaValue:
        return {
            "anyOf": [{"type": "string", "pattern": _DURATION_PATTERN}, {"type": "number", "minimum": 0}],
            "description": "a duration: a number and a unit (ms, s, m, h, d), e.g. 30s, 5m, 1h30m, 14d",
        }

    # Numbers and flags may come from the environment (`port: ${DB_PORT:-5432}`).
    def int_schema(self, schema: Any) -> JsonSchemaValue:
        return _or_reference(super().int_schema(schema))

    def float_schema(self, schema: Any) -> JsonSchemaValue:
        return _or_reference(super().float_schema(schema))

    def bool_schema(self, schema: Any) -> JsonSchemaValue:
        return _or_reference(super().bool_schema(schema))

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft.total_seconds()).replace(" ", "")
        return super().encode_default(dft)

    def generate(self, schema: Any, mode: Any = "validation") -> JsonSchemaValue:
        result = super().generate(schema, mode=mode)
        definitions = result.get("$defs", {})
        for definition in [result, *definitions.values()]:
            _add_secret_files(definition)
        for name, short in _SHORT_FORMS.items():
            if name in definitions:
                definitions[name] = {"anyOf": [definitions[name], short]}
        return result


def _or_reference(schema: JsonSchemaValue) -> JsonSchemaValue:
    return {"anyOf": [schema, {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"}]}


# Models that also accept a one-string spelling (their `mode="before"` validators parse it).
_SHORT_FORMS: dict[str, JsonSchemaValue] = {
    "SessionConfig": {"type": "string", "pattern": r"^\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}\s*$"},
}


# Loose on purpose: editors flag what is plainly not a duration; the loader gives the exact error.
_DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$"


def _is_secret(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(option.get("format") == "password" for option in options)


def _add_secret_files(definition: dict[str, Any]) -> None:
    """Every secret `x` may be given as `x_file` instead (see `secret_file_fields`)."""
    properties = definition.get("properties", {})
    for name, schema in list(properties.items()):
        if not _is_secret(schema):
            continue
        properties[f"{name}_file"] = {
            "type": "string",
            "description": f"a file holding {name} (read once at load, relative to the config file)",
        }
        if name in definition.get("required", []):
            definition["required"].remove(name)


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (YAML language servers check and complete with it)."""
    schema = Config.model_json_schema(mode="validation", schema_generator=_ConfigSchema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tthc-monitor configuration"
    return schema
