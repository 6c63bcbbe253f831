"""Any vendor's JSON dossier API, described entirely by configuration (VNPT iGate, Viettel, in-house).

Example:

    - name: igate
      type: json_api
      url: https://igate.example.gov.vn/api/dossiers
      auth: {kind: login, url: https://igate.example.gov.vn/api/login, username: monitor,
             password_file: /run/secrets/igate, body: {user: "{username}", pass: "{password}"},
             token_path: data.token}
      items_path: data.items
      total_path: data.total
      pagination: {kind: page, page_param: p, size_param: n, first_page: 0}
      fields: {code: soHoSo, due_at: ngayHenTra, received_at: ngayNhan, status: trangThai}
      date_formats: ["%d/%m/%Y %H:%M:%S", epoch_ms]
      status_map: {"1": open, "5": paused, "9": finished}
"""

from __future__ import annotations

from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator

from monitor.dossiers.model import Dossier, DossierStatus

from .base import SourceConfigBase
from .dates import DateParser
from .listing import HttpListingConfig, HttpListingSource
from .mapping import DOSSIER_FIELDS, FieldMapper

__all__ = ["JsonApiSource", "JsonApiSourceConfig", "StatusMapField", "normalize_status_map"]


def normalize_status_map(value: Any) -> Any:
    """YAML reads `{1: open}` with int keys; raw statuses are compared as text."""
    if isinstance(value, dict):
        return {str(key).strip(): status for key, status in value.items()}
    return value


StatusMapField = dict[str, DossierStatus]


class _MappedConfig(SourceConfigBase):
    """Field mapping settings shared by json_api and csv."""

    fields: dict[str, str]
    date_formats: list[str] = Field(default_factory=lambda: ["iso"], min_length=1)
    status_map: StatusMapField = Field(default_factory=dict)
    # Unknown raw statuses take this status instead of rejecting the record (unknown_status).
    default_status: DossierStatus | None = None

    _status_keys = field_validator("status_map", mode="before")(normalize_status_map)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DOSSIER_FIELDS))
        if unknown:
            raise ValueError(f"unknown dossier fields {unknown}; expected some of {list(DOSSIER_FIELDS)}")
        if "code" not in value:
            raise ValueError("must map code")
        if "due_at" not in value and not (
            "received_at" in value and ({"duration_days", "duration_hours"} & set(value))
        ):
            raise ValueError("must map due_at, or received_at and a duration")
        return value

    def mapper(self, *, dotted: bool = True) -> FieldMapper:
        return FieldMapper(
            self.name,
            self.fields,
            DateParser(self.date_formats, self.zone),
            self.status_map,
            self.default_status,
            dotted=dotted,
        )


class JsonApiSourceConfig(_MappedConfig, HttpListingConfig):
    type: Literal["json_api"]


class JsonApiSource(HttpListingSource):
    """A configured JSON API; incremental when `modified_since_param` is set."""

    config: JsonApiSourceConfig

    def __init__(self, config: JsonApiSourceConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(config, session=session)
        self._mapper = config.mapper()

    def map_record(self, record: Any) -> Dossier:
        return self._mapper(record)

    def code_of(self, record: Any) -> str:
        return self._mapper.code_of(record)
