"""Building blocks of every config model, in a module of their own so that the sections defined next to
their code (probes.sources, alerts.channels, monitor.calendar) can import them without an import cycle
through monitor.config, which assembles the whole file.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from monitor.durations import parse_duration

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "ConfigPath",
    "Duration",
    "PositiveDuration",
    "StrictModel",
    "format_location",
    "format_validation_error",
    "join_path",
    "parse_yaml",
    "register_union_tags",
    "secret_file_fields",
    "split_listen",
]


def parse_yaml(text: str) -> Any:
    """YAML text as Python values; ValueError saying where (line, column) and what is wrong otherwise.

    PyYAML raises YAMLError for syntax, but plain ValueError or OverflowError for a scalar it recognises
    and cannot build (`0000-00-00` read as a date): both become the same short message.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"{where}{getattr(exc, 'problem', None) or exc}") from exc
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"a value cannot be read ({exc}); quote it if it is meant as text") from exc


class ConfigError(Exception):
    """The configuration is invalid; `errors` lists every problem with its YAML path."""

    def __init__(self, errors: Iterable[str], source: str = "") -> None:
        self.errors = list(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.errors))


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda value: f"{value.total_seconds():g}s", return_type=str),
]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be greater than zero")
    return value


PositiveDuration = Annotated[Duration, BeforeValidator(lambda v: _positive(parse_duration(v)))]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# The folder of the config file being validated, passed as pydantic validation context: relative file
# paths are read from there. Only fields typed ConfigPath and the `<secret>_file` keys of
# secret_file_fields are paths; a `path:` inside a request body or header is just text.
CONFIG_DIR = "config_dir"


def _relative_to_config(value: Any, info: ValidationInfo) -> Any:
    base = (info.context or {}).get(CONFIG_DIR)
    if base is None or not isinstance(value, str | Path):
        return value
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(base) / path


ConfigPath = Annotated[Path, BeforeValidator(_relative_to_config)]


# Secrets: a field `token` may be given as `token_file: /run/secrets/token` instead. The file is read
# here, once, so the rest of the daemon only ever sees a SecretStr.
def secret_file_fields(*names: str):
    """A `mode="before"` validator that resolves `<name>_file` keys into `<name>` for each secret."""

    def resolve(cls: type[BaseModel], data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in names:
            file_key = f"{name}_file"
            if file_key not in data:
                continue
            if data.get(name) not in (None, ""):
                raise ValueError(f"give either {name} or {file_key}, not both")
            path = Path(_relative_to_config(str(data.pop(file_key)), info)).expanduser()
            try:
                data[name] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"{file_key}: cannot read {path}: {exc.strerror or exc}") from exc
        return data

    return model_validator(mode="before")(resolve)


# Keys under which a discriminated union's tag appears in pydantic's error locations; they are not
# part of the YAML path the user wrote.
UNION_TAGS: set[str] = set()


def register_union_tags(*tags: str) -> None:
    """Let another config section (sources, channels) hide its union tags from error paths."""
    UNION_TAGS.update(tags)


def join_path(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def format_location(location: tuple[Any, ...]) -> str:
    """Pydantic's error location as the YAML path a user wrote: `targets[2].expect.status[0]`."""
    path = ""
    previous: Any = None
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _hidden_location_part(part, previous):
            path = join_path(path, part)
        previous = part
    return path or "<root>"


def _hidden_location_part(part: Any, previous: Any) -> bool:
    """A union tag after a list index, or a validator's name: pydantic's, not the user's."""
    tagged = isinstance(previous, int) and part in UNION_TAGS
    return tagged or (isinstance(part, str) and part.startswith("function-"))


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        context = error.get("ctx", {})
        return f"unknown type {context.get('tag')!r}; expected one of {context.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "required field 'type' is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message[:1].lower() + message[1:]


def format_validation_error(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        lines.append(f"{format_location(error['loc'])}: {_message(error)}")
    return lines


def split_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9464`) into its parts, with a clear error."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)
