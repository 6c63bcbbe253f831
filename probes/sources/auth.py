"""How an HTTP source proves who it is: the `auth:` settings and the headers they give.

`none`, `basic`, `bearer` and `api_key` are static headers (`static_auth_headers`); `login` posts the
credentials once and reuses the token it gets, which `fetcher.HttpFetcher` does as it needs it.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, model_validator

from monitor.configtypes import StrictModel, secret_file_fields

__all__ = [
    "ApiKeyAuth",
    "AuthConfig",
    "BasicAuth",
    "BearerAuth",
    "LoginAuth",
    "NoAuth",
    "static_auth_headers",
]


class NoAuth(StrictModel):
    kind: Literal["none"] = "none"


class BasicAuth(StrictModel):
    kind: Literal["basic"]
    username: str
    password: SecretStr
    _files = secret_file_fields("password")


class BearerAuth(StrictModel):
    kind: Literal["bearer"]
    token: SecretStr
    _files = secret_file_fields("token")


class ApiKeyAuth(StrictModel):
    kind: Literal["api_key"]
    header: str = "X-API-Key"
    key: SecretStr
    _files = secret_file_fields("key")


class LoginAuth(StrictModel):
    """Log in once, reuse the token, log in again when a request answers 401 (once per request).

    `{username}` and `{password}` inside string values of `body` (JSON) or `form` are replaced with
    the credentials, so a vendor's login shape is written as a template.
    """

    kind: Literal["login"]
    url: str
    method: Literal["POST", "GET", "PUT"] = "POST"
    username: str = ""
    password: SecretStr = SecretStr("")
    body: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    token_path: str = "access_token"
    header: str = "Authorization"
    # Joined to the token with one space ("Bearer" -> "Bearer <token>"); "" sends the bare token. Config
    # strings are whitespace-stripped, so the space cannot live in the prefix itself.
    prefix: str = "Bearer"
    _files = secret_file_fields("password")

    @model_validator(mode="after")
    def _one_body(self) -> LoginAuth:
        if self.body is not None and self.form is not None:
            raise ValueError("give either body or form, not both")
        return self


AuthConfig = Annotated[NoAuth | BasicAuth | BearerAuth | ApiKeyAuth | LoginAuth, Field(discriminator="kind")]


def static_auth_headers(auth: NoAuth | BasicAuth | BearerAuth | ApiKeyAuth | LoginAuth) -> dict[str, str]:
    """The headers a static scheme sends with every request ({} for none and login)."""
    if isinstance(auth, BasicAuth):
        raw = f"{auth.username}:{auth.password.get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
    if isinstance(auth, BearerAuth):
        return {"Authorization": "Bearer " + auth.token.get_secret_value()}
    if isinstance(auth, ApiKeyAuth):
        return {auth.header: auth.key.get_secret_value()}
    return {}
