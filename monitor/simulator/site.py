"""The one-stop office's web pages and API accounts: portal home, app login, dashboard, who may call.

`Accounts` holds the one API account and the sessions `POST /login` hands out, and decides whether a
request is authorized (HTTP Basic, a Bearer token or the session cookie). `SitePages` serves the HTML a
person sees: the portal (`/`), the app's login page and form (`/motcua/dang-nhap`, `POST /login`) and
the dashboard behind it (`/motcua/ho-so`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from monitor.simulator.dossier import FINISHED_STATUSES
from monitor.simulator.world import World

__all__ = ["PORTAL_MARKER", "Accounts", "SitePages", "page"]

PORTAL_MARKER = "Cổng Dịch vụ công tỉnh Đồng Tháp"
_SESSION_COOKIE = "JSESSIONID"


def page(title: str, body: str) -> str:
    """A minimal Vietnamese HTML page."""
    return (
        '<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )


class Accounts:
    """The API account (one username and password) and the session tokens logins have handed out."""

    __slots__ = ("_password", "_sessions", "username")

    def __init__(self, username: str, password: SecretStr) -> None:
        self.username = username
        self._password = password
        self._sessions: dict[str, str] = {}

    def change_password(self, password: str) -> None:
        """The old password and every session stop working."""
        self._password = SecretStr(password)
        self._sessions.clear()

    def credentials_ok(self, username: str, password: str) -> bool:
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self._password.get_secret_value().encode())
        return user_ok and password_ok

    def open_session(self, username: str) -> str:
        """A new session token for a successful login."""
        token = secrets.token_urlsafe(24)
        self._sessions[token] = username
        return token

    def authorized(self, request: web.Request, *, basic_only: bool = False) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            username, _, password = decoded.partition(":")
            return self.credentials_ok(username, password)
        if basic_only:
            return False
        if scheme.lower() == "bearer":
            return value.strip() in self._sessions
        return request.cookies.get(_SESSION_COOKIE, "") in self._sessions


class SitePages:
    """The HTML pages of the portal and the one-stop app; `app_url` is where an anonymous visitor goes."""

    __slots__ = ("_accounts", "_app_url", "_world")

    def __init__(self, world: World, accounts: Accounts, app_url: Callable[[], str]) -> None:
        self._world = world
        self._accounts = accounts
        self._app_url = app_url

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self._portal)
        router.add_get("/motcua", self._login_page)
        router.add_get("/motcua/", self._login_page)
        router.add_get("/motcua/dang-nhap", self._login_page)
        router.add_post("/login", self._login)
        router.add_get("/motcua/ho-so", self._dashboard)

    async def _portal(self, request: web.Request) -> web.Response:
        counts = self._world.counts_by_status()
        finished = sum(counts.get(status, 0) for status in FINISHED_STATUSES)
        body = (
            f"<header><h1>{PORTAL_MARKER}</h1><p>Cổng thông tin một cửa điện tử</p></header>"
            "<nav><a href='/motcua/dang-nhap'>Đăng nhập một cửa</a></nav>"
            f"<section><p>Hồ sơ đã tiếp nhận: {len(self._world.dossiers)}</p>"
            f"<p>Hồ sơ đã giải quyết: {finished}</p></section>"
        )
        return web.Response(text=page(PORTAL_MARKER, body), content_type="text/html")

    def _login_form(self, error: str = "") -> str:
        notice = f"<p class='error'>{html.escape(error)}</p>" if error else ""
        return page(
            "Đăng nhập - Hệ thống thông tin một cửa điện tử",
            "<h1>Hệ thống thông tin một cửa điện tử</h1>"
            f"{notice}<form method='post' action='/login'>"
            "<label>Tên đăng nhập <input name='username'></label>"
            "<label>Mật khẩu <input type='password' name='password'></label>"
            "<button type='submit'>Đăng nhập</button></form>",
        )

    async def _login_page(self, request: web.Request) -> web.Response:
        return web.Response(text=self._login_form(), content_type="text/html")

    async def _login(self, request: web.Request) -> web.Response:
        wants_json = request.content_type == "application/json" or "json" in request.headers.get("Accept", "")
        try:
            data: Any = (
                await request.json() if request.content_type == "application/json" else await request.post()
            )
        except (ValueError, UnicodeDecodeError):
            data = {}
        username = str(data.get("username", "")) if hasattr(data, "get") else ""
        password = str(data.get("password", "")) if hasattr(data, "get") else ""
        if not self._accounts.credentials_ok(username, password):
            if wants_json:
                return web.json_response({"error": "invalid username or password"}, status=401)
            return web.Response(
                status=401,
                text=self._login_form("Sai tên đăng nhập hoặc mật khẩu"),
                content_type="text/html",
            )
        token = self._accounts.open_session(username)
        if wants_json:
            response = web.json_response({"token": token, "token_type": "Bearer", "username": username})
        else:
            response = web.Response(
                text=page(
                    "Đăng nhập thành công", "<h1>Đăng nhập thành công</h1><a href='/motcua/ho-so'>Hồ sơ</a>"
                ),
                content_type="text/html",
            )
        response.set_cookie(_SESSION_COOKIE, token, httponly=True, path="/")
        return response

    async def _dashboard(self, request: web.Request) -> web.Response:
        if not self._accounts.authorized(request):
            raise web.HTTPFound(self._app_url())
        counts = self._world.counts_by_status()
        rows = "".join(
            f"<tr><td>{status}</td><td>{count}</td></tr>" for status, count in sorted(counts.items())
        )
        return web.Response(
            text=page("Danh sách hồ sơ", f"<h1>Danh sách hồ sơ</h1><table>{rows}</table>"),
            content_type="text/html",
        )
