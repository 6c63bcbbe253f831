"""Building blocks of every config model, in a module of their own so that the sections defined next to
their code (probes.sources, alerts.channels, monitor.calendar) can import them without an import cycle
through monitor.config, which assembles the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
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
from pydantic_core import InitErrorDetails, PydanticCustomError

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
    "offline_validation",
    "parse_yaml",
    "raise_at",
    "reads_files",
    "register_union_tags",
    "secret_file_fields",
    "split_listen",
]

# `check-config --offline`: validate what the file says without reading the files it names (secrets,
# CA bundles, calendar overrides), which may exist only on the server it is meant for.
_OFFLINE: ContextVar[bool] = ContextVar("config_offline", default=False)
OFFLINE_SECRET = "<not read: offline check>"


@contextmanager
def offline_validation() -> Iterator[None]:
    """Within this block config validators read no file."""
    token = _OFFLINE.set(True)
    try:
        yield
    finally:
        _OFFLINE.reset(token)


def reads_files() -> bool:
    """False inside `offline_validation()`: validators then skip their file checks."""
    return not _OFFLINE.get()


def raise_at(problems: Sequence[tuple[tuple[str | int, ...], str]], title: str = "config") -> None:
    """Raise a ValidationError whose errors sit at precise locations below the validated model.

    A model validator can only fail as a whole; cross-field checks (a duplicate id in people[3], an
    unknown channel in rules[1].channels[0], an unreadable token_file) still deserve the exact YAML path,
    and pydantic merges the locations of a ValidationError raised inside a validator with the model's own.
    """
    if not problems:
        return
    details = [
        InitErrorDetails(
            type=PydanticCustomError("config", "{message}", {"message": message}),
            loc=location,
            input=None,
        )
        for location, message in problems
    ]
    raise ValidationError.from_exception_data(title, details)


def parse_yaml(text: str) -> Any:
    """YAML text as Python values; ValueError saying where (line, column) and what is wrong otherwise.

    PyYAML raises YAMLError for syntax, but plain ValueError, TypeError or OverflowError for a scalar it
    recognises and cannot build (`0000-00-00` read as a date): all become the same short message.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"{where}{getattr(exc, 'problem', None) or exc}") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"a value cannot be read: {exc}") from exc


class ConfigError(Exception):
    """The configuration is invalid; `errors` lists every problem with its YAML path."""

    def __init__(self, errors: Iterable[str], source: str = "", *, unreadable: bool = False) -> None:
        self.errors = list(errors)
        self.source = source
        # The file itself could not be read as YAML text (missing, a folder, binary, UTF-16).
        self.unreadable = unreadable
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.errors))

    @property
    def loggable_errors(self) -> list[str]:
        """The errors with phone numbers shortened: config errors show them as written, logs must not."""
        return [_PHONE_LIKE.sub(_shorten_number, error) for error in self.errors]


# A run of 7+ digits, maybe with the separators people write in phone numbers.
_PHONE_LIKE = re.compile(r"\+?\d[\d .\-()]{5,}\d")


def _shorten_number(match: re.Match[str]) -> str:
    text = match.group(0)
    return text[:3] + "…" + text[-3:]


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
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name in names:
            file_key = f"{name}_file"
            if file_key not in data:
                continue
            if data.get(name) not in (None, ""):
                raise ValueError(f"give either {name} or {file_key}, not both")
            path = Path(_relative_to_config(str(data.pop(file_key)), info)).expanduser()
            if not reads_files():
                data[name] = OFFLINE_SECRET
                continue
            try:
                data[name] = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror or exc
                problems.append(((file_key,), f"cannot read {path}: {reason}"))
        raise_at(problems)
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
            path = join_path(path, part if _plain_key(part) else repr(part))
        previous = part
    return path or "<root>"


def _plain_key(part: Any) -> bool:
    """A key shown as written; others (empty, control characters, `:` or `.`) are quoted, so the path
    stays one readable line and `key: message` cannot be misread."""
    text = str(part)
    return bool(text) and text.isprintable() and text == text.strip() and not set(text) & set(":.[]")


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
