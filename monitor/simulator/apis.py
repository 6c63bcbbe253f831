"""The dossier listings the simulator serves, one handler per source format the monitor reads.

OpenCPS v2 (`/o/rest/v2/dossiers[/{id or dossierNo}]`, also under `/o/secure/rest/v2`; Basic auth or
a login's Bearer token, header `groupId`), the national sync shape (`/dvcqg/hoso`, 1-based pages) and
an officer's CSV export (`/export/dossiers.csv`). Errors have the shape Liferay's JAX-RS mapper gives
OpenCPS errors. The `truncated` and `empty` faults change these replies (`FAULTS_KEY`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from monitor.simulator.dossier import SimDossier, parse_local
from monitor.simulator.fault_injection import FAULTS_KEY
from monitor.simulator.faults import Fault
from monitor.simulator.site import Accounts
from monitor.simulator.worktime import VN
from monitor.simulator.world import World

__all__ = ["DossierApis"]

_API_PREFIXES = ("/o/rest/v2", "/o/secure/rest/v2")


def _json_error(status: int, message: str, description: str = "") -> web.Response:
    # The shape Liferay's JAX-RS error mapper gives OpenCPS errors.
    body = {"code": status, "message": message, "description": description or message}
    return web.json_response(body, status=status)


def _listing_reply(
    faults: dict[str, Fault],
    total: int,
    page: list[SimDossier],
    head: Callable[[int], bytes],
    item: Callable[[SimDossier], bytes],
) -> web.Response:
    """A JSON listing, `head(total)`, the items and `]}`, as the `empty` and `truncated` faults change it."""
    if "empty" in faults:
        total, page = 0, []
    truncated = faults.get("truncated")
    if truncated is not None and truncated.variant == "short":
        page = page[: len(page) // 2]
    body = head(total) + b",".join(item(dossier) for dossier in page) + b"]}"
    if truncated is not None and truncated.variant == "cut":
        body = body[: max(len(body) // 2, 1)]
    return web.Response(body=body, content_type="application/json", charset="utf-8")


class DossierApis:
    """The listing handlers over one simulated world, for the API account of one `group_id`."""

    __slots__ = ("_accounts", "_clock", "_group_id", "_world")

    def __init__(
        self, world: World, accounts: Accounts, group_id: str, clock: Callable[[], datetime]
    ) -> None:
        self._world = world
        self._accounts = accounts
        self._group_id = group_id
        self._clock = clock

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for prefix in _API_PREFIXES:
            router.add_get(prefix + "/dossiers", self._list_dossiers)
            router.add_get(prefix + "/dossiers/{key}", self._get_dossier)
        router.add_get("/dvcqg/hoso", self._national)
        router.add_get("/export/dossiers.csv", self._export_csv)

    def _check_api(self, request: web.Request) -> web.Response | None:
        if not self._accounts.authorized(request):
            response = _json_error(401, "Unauthorized", "authentication is required")
            response.headers["WWW-Authenticate"] = 'Basic realm="OpenCPS"'
            return response
        group_id = request.headers.get("groupId", "").strip()
        if not group_id:
            return _json_error(400, "Bad Request", "groupId header is required")
        if group_id != self._group_id:
            return _json_error(403, "Forbidden", f"no permission on group {group_id}")
        return None

    def _select(self, request: web.Request) -> list[SimDossier]:
        """The filtered dossiers for a list request; raises HTTPBadRequest with a JSON body."""
        query = request.query
        statuses = frozenset(s.strip() for s in query.get("status", "").split(",") if s.strip())
        agency_text = query.get("agency", "").strip()
        agencies = frozenset(
            a.strip() for a in agency_text.split(",") if a.strip() and a.strip().lower() != "all"
        )
        try:
            modified_from = parse_local(query["fromModifiedDate"]) if query.get("fromModifiedDate") else None
            modified_to = parse_local(query["toModifiedDate"]) if query.get("toModifiedDate") else None
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"code": 400, "message": "Bad Request", "description": str(exc)}),
                content_type="application/json",
            ) from None
        top = query.get("top", "").strip()
        return self._world.select(
            statuses=statuses,
            agencies=agencies,
            dossier_no=query.get("dossierNo", "").strip(),
            modified_from=modified_from,
            modified_to=modified_to,
            top=top if top in ("overdue", "coming", "delay") else "",
            now=self._clock(),
        )

    async def _list_dossiers(self, request: web.Request) -> web.Response:
        """OpenCPS `GET /dossiers`; without `end` (or end=0) it returns everything, like the real one."""
        if (error := self._check_api(request)) is not None:
            return error
        start = _int_param(request, "start", 0)
        end = _int_param(request, "end", 0)
        selection = self._select(request)
        total = len(selection)
        page = selection[max(start, 0) :] if end <= 0 else selection[max(start, 0) : end]
        group_id = self._group_id
        return _listing_reply(
            request[FAULTS_KEY],
            total,
            page,
            lambda total: b'{"total":%d,"data":[' % total,
            lambda dossier: dossier.item_bytes(group_id),
        )

    async def _get_dossier(self, request: web.Request) -> web.Response:
        if (error := self._check_api(request)) is not None:
            return error
        dossier = self._world.get(request.match_info["key"])
        if dossier is None or "empty" in request[FAULTS_KEY]:
            return _json_error(404, "Not Found", "dossier not found")
        return web.Response(
            body=dossier.item_bytes(self._group_id), content_type="application/json", charset="utf-8"
        )

    async def _national(self, request: web.Request) -> web.Response:
        """National sync shape (DongBoHoSoMC), 1-based `page` of `size` records, dates yyyyMMddHHmmss."""
        if not self._accounts.authorized(request):
            return _json_error(401, "Unauthorized", "authentication is required")
        page_number = max(_int_param(request, "page", 1), 1)
        size = min(max(_int_param(request, "size", 100), 1), 5000)
        selection = self._select(request)
        total = len(selection)
        page = selection[(page_number - 1) * size : page_number * size]
        return _listing_reply(
            request[FAULTS_KEY],
            total,
            page,
            lambda total: (
                b'{"service":"DongBoHoSoMC","total":%d,"page":%d,"size":%d,"data":['
                % (total, page_number, size)
            ),
            SimDossier.national_bytes,
        )

    async def _export_csv(self, request: web.Request) -> web.Response:
        """An officer's CSV export: UTF-8 with BOM (so spreadsheet programs read the accents)."""
        if not self._accounts.authorized(request):
            return _json_error(401, "Unauthorized", "authentication is required")
        selection = self._select(request)
        faults = request[FAULTS_KEY]
        if "empty" in faults:
            selection = []
        body = self._world.csv_text(selection).encode("utf-8-sig")
        if "truncated" in faults:
            body = body[: max(len(body) // 2, 1)]
        stamp = self._clock().astimezone(VN).strftime("%Y%m%d")
        return web.Response(
            body=body,
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="danh-sach-ho-so-{stamp}.csv"'},
        )


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps(
                {"code": 400, "message": "Bad Request", "description": f"{name} must be an integer"}
            ),
            content_type="application/json",
        ) from None
