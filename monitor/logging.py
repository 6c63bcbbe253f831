"""structlog set-up: JSON when not on a terminal, one event name per line, secrets redacted.

Two guards keep secrets out of logs: keys that name a secret are masked whatever their value, and every
configured secret is scrubbed from the final rendered line, after exceptions are formatted, for
structlog and stdlib (aiohttp) records alike. The line is scrubbed of each secret as written and as JSON
or repr() would escape it, so a secret with quotes or Vietnamese letters cannot slip through escaped.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from datetime import datetime, tzinfo
from typing import Any, Literal

import structlog

from monitor.configtypes import StrictModel

__all__ = ["LoggingConfig", "configure_logging", "redact_secrets", "register_secrets", "scrub_text"]


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
# Tokens issued at run time (Zalo, source logins): only the newest are kept, so a daemon renewing its
# tokens for a year does not scan thousands of dead ones on every line.
_TRANSIENT_KEPT = 64
_transient_values: collections.deque[str] = collections.deque(maxlen=_TRANSIENT_KEPT)
# Every form a secret can take in a rendered line (raw, JSON- and repr-escaped), longest first.
_secret_forms: list[str] = []


def register_secrets(values: Iterable[str], *, transient: bool = False) -> None:
    """Remember secret values so they are scrubbed from every log line from now on. `transient` ones
    (tokens issued at run time) are kept among the newest few only."""
    # Very short values would mask ordinary words; no real token is this short.
    fresh = [value for value in values if value and len(value) >= 6]
    if transient:
        _transient_values.extend(value for value in fresh if value not in _transient_values)
    else:
        _secret_values.update(fresh)
    forms = set()
    for secret in (*_secret_values, *_transient_values):
        forms.update(
            (
                secret,
                json.dumps(secret)[1:-1],
                json.dumps(secret, ensure_ascii=False)[1:-1],
                repr(secret)[1:-1],
                ascii(secret)[1:-1],
            )
        )
    _secret_forms[:] = sorted(forms, key=len, reverse=True)


def scrub_text(text: str) -> str:
    """`text` with every registered secret, in any of its escaped forms, replaced by the mask."""
    for form in _secret_forms:
        if form in text:
            text = text.replace(form, _MASK)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
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


class _ScrubbedRenderer:
    """The renderer, then scrub_text on the finished line: nothing reaches the stream unscrubbed."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        return scrub_text(str(self._renderer(logger, method, event_dict)))


class _ScrubbingFormatter(structlog.stdlib.ProcessorFormatter):
    """Stdlib records (aiohttp's) through the same processors, and the final text scrubbed: the base
    class may still append traceback text of its own after the processors ran."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


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
    ]
    # Exceptions become text first, then secrets are masked in the event and once more in the line.
    tail: list[Any] = [structlog.processors.format_exc_info, redact_secrets, _ScrubbedRenderer(renderer)]
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _ScrubbingFormatter(
            processors=[*shared[1:], structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
            foreign_pre_chain=[],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
