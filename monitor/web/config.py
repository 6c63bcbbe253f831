"""The `api:` section: the bearer token of the JSON API."""

from __future__ import annotations

import ipaddress

from pydantic import SecretStr

from monitor.configtypes import StrictModel, secret_file_fields

__all__ = ["ApiConfig", "is_loopback_host"]


class ApiConfig(StrictModel):
    """The HTTP API under /api/v1. With a token set, requests need `Authorization: Bearer <token>`."""

    token: SecretStr | None = None
    _files = secret_file_fields("token")


def is_loopback_host(host: str) -> bool:
    """Whether a listen host only accepts connections from this machine (127.0.0.0/8, ::1, localhost).

    "" and "0.0.0.0" (every interface) and any other name or address are not: the API is then reachable
    from the network.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
