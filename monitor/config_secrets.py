"""Which values of a loaded config are secrets, so logging can scrub them wherever they appear: every
`SecretStr`, the base64 of basic-auth pairs, and the passwords inside the store's PostgreSQL URL."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, SecretStr

from monitor.config import Config

__all__ = ["config_secrets"]


def config_secrets(config: Config) -> list[str]:
    """Every secret value in the config, so logging can scrub it wherever it appears."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, SecretStr):
            found.append(node.get_secret_value())
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
            # Basic auth sends base64("user:password"); a server echoing its header would show that.
            username, password = getattr(node, "username", None), getattr(node, "password", None)
            if isinstance(username, str) and isinstance(password, SecretStr) and password.get_secret_value():
                found.append(base64.b64encode(f"{username}:{password.get_secret_value()}".encode()).decode())
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(config)
    store_url = config.store.url
    if store_url is not None:
        passwords = _url_passwords(store_url.get_secret_value())
        if not passwords:
            # Nothing secret in it (trust or peer auth, a .pgpass file): keep it readable in logs and
            # errors, which name the server the store is on.
            found.remove(store_url.get_secret_value())
        found.extend(passwords)
    return found


def _url_passwords(url: str) -> list[str]:
    """The passwords in a PostgreSQL URL (`user:password@`, `?password=`, `?sslpassword=`), as written
    and decoded: an error or a log line may quote one without the rest of the URL."""
    passwords: list[str] = []
    try:
        parts = conninfo_to_dict(url)
        passwords += [str(parts.get("password") or ""), str(parts.get("sslpassword") or "")]
    except psycopg.ProgrammingError:
        # Unreadable to psycopg (it says so at connect, without the URL); urlsplit still finds what it can.
        passwords.append("")
    try:
        written = urlsplit(url).password or ""
    except ValueError:
        written = ""
    passwords += [written, unquote(written)]
    return sorted({password for password in passwords if password})
