"""A fake webhook receiver that verifies `X-TTHC-Signature` like a real one, de-duplicates on
`X-TTHC-Alert-Id`; also a generic JSON/form SMS gateway for the `sms_http` channel."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from alerts.channels.webhook import ALERT_ID_HEADER, SIGNATURE_HEADER, verify_signature
from tests.fakes import FakeServer, run_standalone

__all__ = ["FakeWebhookReceiver"]


class FakeWebhookReceiver(FakeServer):
    """`POST /hook`: 401 on a bad signature, 200 otherwise; `POST /sms` and `GET /sms`: a generic SMS
    gateway replying `{"result": "ok", "id": ...}` (or `reply` / `status` when set)."""

    def __init__(self, *, secret: str | None = "fake-webhook-secret", host: str = "127.0.0.1", port: int = 0):
        super().__init__(host=host, port=port)
        self.secret = secret
        self.status = 200
        self.reply: dict[str, Any] | None = None
        self.accepted: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.duplicates = 0
        self.sms: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return self.base_url + "/hook"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/sms", self._sms)
        app.router.add_get("/sms", self._sms)

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.secret is not None and not verify_signature(
            self.secret, body, request.headers.get(SIGNATURE_HEADER)
        ):
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        if self.status != 200:
            return web.json_response({"error": "refused"}, status=self.status)
        alert_id = request.headers.get(ALERT_ID_HEADER)
        if any(item["alert_id"] == alert_id for item in self.accepted):
            self.duplicates += 1
        else:
            self.accepted.append(await request.json())
        return web.json_response({"ok": True}, headers={"X-Request-Id": f"hook-{len(self.accepted)}"})

    async def _sms(self, request: web.Request) -> web.Response:
        if self.status != 200:
            return web.json_response({"result": "error"}, status=self.status)
        if request.method == "GET":
            fields: dict[str, Any] = dict(request.query)
        elif request.content_type == "application/json":
            fields = await request.json()
        else:
            fields = dict(await request.post())
        self.sms.append({"fields": fields, "headers": dict(request.headers)})
        return web.json_response(self.reply or {"result": "ok", "id": f"sms-{len(self.sms)}"})


if __name__ == "__main__":
    run_standalone(FakeWebhookReceiver, "fake webhook receiver and generic sms gateway")
