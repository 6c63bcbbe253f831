"""A fake SpeedSMS.vn `/index.php/sms/send` with Basic auth `token:x`.

Success: `{"status": "success", "code": "00", "data": {"tranId": ..., "totalSMS": ..., "totalPrice": ...,
"invalidPhone": [...]}}`; errors: `{"status": "error", "code": "...", "message": "..."}` (codes
*unconfirmed*, see alerts/channels/sms_speedsms.py). A wrong token gets HTTP 401.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from aiohttp import web

from tests.fakes import FakeServer, run_standalone

__all__ = ["FakeSpeedSms"]

_PHONE = re.compile(r"^(84|0)[35789]\d{8}$")


class FakeSpeedSms(FakeServer):
    """The send endpoint at `url`. Switches: `balance` (300 at 0), `force_code`, `down` (HTTP 500)."""

    PATH = "/index.php/sms/send"

    def __init__(self, *, token: str = "fake-speedsms-token", host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.token = token
        self.balance: int | None = None
        self.force_code: str | None = None
        self.down = False
        self.messages: list[dict[str, Any]] = []
        self._next_tran_id = 1000

    @property
    def url(self) -> str:
        return self.base_url + self.PATH

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.PATH, self._send)

    def _error(self, code: str, message: str, status: int = 200) -> web.Response:
        return web.json_response({"status": "error", "code": code, "message": message}, status=status)

    async def _send(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=500, text="Internal Server Error")
        expected = "Basic " + base64.b64encode(f"{self.token}:x".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self._error("401", "Unauthorized", status=401)
        if self.force_code is not None:
            return self._error(self.force_code, "forced error")
        body = await request.json()
        to = body.get("to")
        content = body.get("content")
        if not isinstance(to, list) or not to or not content:
            return self._error("101", "Invalid or missing parameters")
        invalid = [phone for phone in to if not _PHONE.match(str(phone))]
        valid = [phone for phone in to if phone not in invalid]
        if valid and self.balance is not None:
            if self.balance < len(valid):
                return self._error("300", "Not enough balance")
            self.balance -= len(valid)
        tran_id = self._next_tran_id
        self._next_tran_id += 1
        for phone in valid:
            self.messages.append(
                {"phone": phone, "content": content, "sms_type": body.get("sms_type"), "tran_id": tran_id}
            )
        return web.json_response(
            {
                "status": "success",
                "code": "00",
                "data": {
                    "tranId": tran_id,
                    "totalSMS": len(valid),
                    "totalPrice": 250 * len(valid),
                    "invalidPhone": invalid,
                },
            }
        )


if __name__ == "__main__":
    run_standalone(FakeSpeedSms, "fake SpeedSMS gateway")
