"""Dossier sources: where the monitor reads dossiers (hồ sơ TTHC) and their deadlines from.

`SOURCES` maps a config `type` to a factory; `build_source(config)` makes the source for one entry of
the `sources:` config list. Register `SOURCE_TYPES` with `monitor.config.register_union_tags` so error
paths read `sources[0].base_url` rather than `sources[0].opencps.base_url`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import aiohttp
from pydantic import Field

from .base import DossierSource, SourceConfigBase
from .csv_files import CsvSource, CsvSourceConfig
from .dvcqg import DvcqgSource, DvcqgSourceConfig
from .json_api import JsonApiSource, JsonApiSourceConfig
from .opencps import OpenCpsSource, OpenCpsSourceConfig

__all__ = [
    "SOURCES",
    "SOURCE_TYPES",
    "CsvSource",
    "CsvSourceConfig",
    "DossierSource",
    "DvcqgSource",
    "DvcqgSourceConfig",
    "JsonApiSource",
    "JsonApiSourceConfig",
    "OpenCpsSource",
    "OpenCpsSourceConfig",
    "SourceConfig",
    "SourceConfigBase",
    "build_source",
]

SourceConfig = Annotated[
    OpenCpsSourceConfig | DvcqgSourceConfig | JsonApiSourceConfig | CsvSourceConfig,
    Field(discriminator="type"),
]
SOURCE_TYPES = ("opencps", "dvcqg", "json_api", "csv")


def _http(factory: Callable[..., DossierSource]) -> Callable[..., DossierSource]:
    def build(config: Any, *, session: aiohttp.ClientSession | None = None, **_: Any) -> DossierSource:
        return factory(config, session=session)

    return build


def _csv(config: Any, **_: Any) -> DossierSource:
    return CsvSource(config)


SOURCES: dict[str, Callable[..., DossierSource]] = {
    "opencps": _http(OpenCpsSource),
    "dvcqg": _http(DvcqgSource),
    "json_api": _http(JsonApiSource),
    "csv": _csv,
}


def build_source(config: SourceConfigBase, *, session: aiohttp.ClientSession | None = None) -> DossierSource:
    """The source for one validated config entry; an injected `session` is shared and not closed by it."""
    kind = getattr(config, "type", None)
    try:
        factory = SOURCES[kind]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown source type {kind!r}") from None
    return factory(config, session=session)
