"""structlog set-up: JSON when not on a terminal, one event name per line, secrets redacted.

Two guards keep secrets out of logs: keys that name a secret are masked whatever their value, and the
values of every configured secret are scrubbed from any string that would be written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from datetime import datetime, tzinfo
from typing import Any, Literal

import structlog

from monitor.configtypes import StrictModel

__all__ = ["LoggingConfig", "configure_logging", "redact_secrets", "register_secrets"]


class LoggingConfig(StrictModel):
    """The `logging:` section."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto = JSON when stdout is not a terminal.
    format: Literal["auto", "json", "console"] = "auto"
    # local = the config's `timezone` clock time with its offset (+07:00), for people reading the log.
    timestamps: Literal["utc", "local"] = "utc"


_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api_?key|authorization|cookie)", re.IGNORECASE)
_MASK = "[redacted]"
_secret_values: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so they are scrubbed from every log line from now on."""
    # Very short values would mask ordinary words; no real token is this short.
    _secret_values.update(value for value in values if value and len(value) >= 6)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secret_values:
            if secret in value:
                value = value.replace(secret, _MASK)
        return value
    if isinstance(value, dict):
        return {key: _MASK if _SECRET_KEY.search(str(key)) else _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(item) for item in value)
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and scrub known secret values."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and key != "event":
            event_dict[key] = _MASK
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def _local_timestamp(zone: tzinfo | None) -> Any:
    def stamp(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict["timestamp"] = datetime.now(zone).astimezone(zone).isoformat(timespec="milliseconds")
        return event_dict

    return stamp


def configure_logging(
    level: str = "info", fmt: str = "auto", timestamps: str = "utc", zone: tzinfo | None = None
) -> None:
    """Configure structlog and route stdlib logging (aiohttp's) through the same renderer.

    `timestamps="local"` writes the time in `zone` (the config's `timezone`) with its offset."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    # ensure_ascii=False: Vietnamese stays readable (`Hồ sơ`, not `H\u1ed3 s\u01a1`) in journald and
    # `docker logs`; the stream is UTF-8.
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _local_timestamp(zone) if timestamps == "local" else structlog.processors.TimeStamper(fmt="iso"),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processors=[*shared[1:], renderer], foreign_pre_chain=[])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
