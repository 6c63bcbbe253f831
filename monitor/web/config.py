"""The `api:` and `status:` sections: the bearer token of the JSON API, who may read the status page."""

from __future__ import annotations

import ipaddress

from pydantic import SecretStr

from monitor.configtypes import StrictModel, secret_file_fields, split_listen

__all__ = ["ApiConfig", "StatusConfig", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether `host` (from `listen`) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class ApiConfig(StrictModel):
    """The HTTP API under /api/v1. With a token set, requests need `Authorization: Bearer <token>`."""

    token: SecretStr | None = None
    # Serving the API to other machines without a token is refused unless this says it is meant (a closed
    # network, a proxy that authenticates); the daemon then warns at every start.
    allow_remote_without_token: bool = False
    _files = secret_file_fields("token")

    def open_to_network(self, listen: str) -> bool:
        """True when `listen` can be reached from other machines and no token protects the API."""
        return self.token is None and not is_loopback(split_listen(listen)[0])


class StatusConfig(StrictModel):
    """The /status page. Not public by default: it then needs the API's bearer token like /api/."""

    public: bool = False
