"""The `api:` section: the bearer token of the JSON API."""

from __future__ import annotations

from pydantic import SecretStr

from monitor.configtypes import StrictModel, secret_file_fields

__all__ = ["ApiConfig"]


class ApiConfig(StrictModel):
    """The HTTP API under /api/v1. With a token set, requests need `Authorization: Bearer <token>`."""

    token: SecretStr | None = None
    _files = secret_file_fields("token")
