"""The `api:` and `status:` sections: the bearer token of the JSON API, who may read the status page."""

from __future__ import annotations

from pydantic import SecretStr

from monitor.configtypes import StrictModel, secret_file_fields

__all__ = ["ApiConfig", "StatusConfig"]


class ApiConfig(StrictModel):
    """The HTTP API under /api/v1. With a token set, requests need `Authorization: Bearer <token>`."""

    token: SecretStr | None = None
    _files = secret_file_fields("token")


class StatusConfig(StrictModel):
    """The /status page. Not public by default: it then needs the API's bearer token like /api/."""

    public: bool = False
