"""Dossier sources against real HTTP servers on 127.0.0.1 and real CSV files: paging, auth, failures."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor.dossiers.model import DossierStatus, SyncBatch, SyncError, SyncFailure
from monitor.simulator import DEFAULT_PASSWORD, Simulator
from probes.sources import (
    SOURCES,
    CsvSource,
    CsvSourceConfig,
    DossierSource,
    DvcqgSource,
    DvcqgSourceConfig,
    JsonApiSource,
    JsonApiSourceConfig,
    OpenCpsSource,
    OpenCpsSourceConfig,
    build_source,
)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
APPLICANT = "Phạm Thị Riêng Tư"
PHONE = "0987654321"
FAST = {"retry_wait": "1ms", "timeout": "5s"}


def vendor_record(index: int) -> dict[str, Any]:
    return {
        "soHoSo": f"000.00.12.H12-260301-{index:04d}",
        "trangThai": "1" if index % 3 else "5",
        "ngayNhan": "02/03/2026 08:00:00",
        "ngayHenTra": "06/03/2026 17:00:00",
        "donVi": {"ma": "H12.01"},
        "hoTen": APPLICANT,
        "dienThoai": PHONE,
    }


@dataclass
class Vendor:
    """A small vendor API: every paging kind and auth kind, plus switchable faults."""

    records: list[dict[str, Any]] = field(default_factory=lambda: [vendor_record(i) for i in range(23)])
    auth: tuple[str, ...] = ()
    # Fault injection: a mode for every request, or only for requests after `fault_after` succeeded.
    fault: str = ""
    fault_after: int = 0
    fail_times: int = 10**9
    report_total: int | None = None
    omit_total: bool = False
    page_cap: int | None = None
    tokens: set[str] = field(default_factory=set)
    login_calls: int = 0
    bad_login: bool = False
    requests: list[dict[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    served: int = 0
    bodies: list[Any] = field(default_factory=list)

    def authorized(self, request: web.Request) -> bool:
        if not self.auth:
            return True
        kind = self.auth[0]
        header = request.headers.get("Authorization", "")
        if kind == "basic":
            return header == "Basic " + base64.b64encode(self.auth[1].encode()).decode()
        if kind == "bearer":
            return header == f"Bearer {self.auth[1]}"
        if kind == "api_key":
            return request.headers.get(self.auth[1]) == self.auth[2]
        if kind == "login":
            return header.removeprefix("Token ") in self.tokens
        return False

    def slice(self, start: int, size: int) -> list[dict[str, Any]]:
        size = min(size, self.page_cap) if self.page_cap else size
        return self.records[start : start + size]

    def total(self) -> int:
        return self.report_total if self.report_total is not None else len(self.records)


def build_app(vendor: Vendor) -> web.Application:
    """The vendor's routes: /page, /offset, /startend, /next, /cursor, /all, /login, /opencps, /national."""

    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        vendor.requests.append(dict(request.query))
        vendor.headers.append(dict(request.headers))
        if request.path != "/login" and not vendor.authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        if (
            vendor.fault
            and request.path != "/login"
            and vendor.served >= vendor.fault_after
            and vendor.fail_times
        ):
            vendor.fail_times -= 1
            if vendor.fault == "error_500":
                return web.Response(status=500, text="Internal Server Error")
            if vendor.fault == "html":
                return web.Response(
                    text="<html><body>Bảo trì hệ thống</body></html>", content_type="text/html"
                )
            if vendor.fault == "html_as_json":
                return web.Response(text="<!DOCTYPE html><html></html>", content_type="application/json")
            if vendor.fault == "not_json":
                return web.Response(text="ok, fine", content_type="text/plain")
            if vendor.fault == "truncated_body":
                return web.Response(
                    text='{"data": {"items": [{"soHoSo": "x"', content_type="application/json"
                )
            if vendor.fault == "slow":
                await asyncio.sleep(3)
            if vendor.fault == "no_list":
                return web.json_response({"data": {"message": "maintenance"}})
            if vendor.fault == "forbidden":
                return web.json_response({"error": "no"}, status=403)
        vendor.served += 1
        return await handler(request)

    def wrap(items: list[dict[str, Any]], **extra: Any) -> web.Response:
        data: dict[str, Any] = {"items": items}
        if not vendor.omit_total:
            data["total"] = vendor.total()
        return web.json_response({"data": data, **extra})

    async def page(request: web.Request) -> web.Response:
        number, size = int(request.query["page"]), int(request.query["size"])
        first = int(request.query.get("first", "1"))
        return wrap(vendor.slice((number - first) * size, size))

    async def offset(request: web.Request) -> web.Response:
        return wrap(vendor.slice(int(request.query["offset"]), int(request.query["limit"])))

    async def start_end(request: web.Request) -> web.Response:
        start, end = int(request.query["start"]), int(request.query["end"])
        return wrap(vendor.slice(start, end - start))

    async def next_link(request: web.Request) -> web.Response:
        after, size = int(request.query.get("after", "0")), int(request.query.get("size", "5"))
        items = vendor.slice(after, size)
        following = after + len(items)
        link = f"/next?after={following}&size={size}" if following < len(vendor.records) else None
        return web.json_response({"items": items, "links": {"next": link}})

    async def cursor(request: web.Request) -> web.Response:
        position = int(request.query.get("c", "0") or 0)
        items = vendor.slice(position, int(request.query.get("n", "5")))
        following = position + len(items)
        return web.json_response(
            {"result": items, "meta": {"cursor": str(following) if following < len(vendor.records) else ""}}
        )

    async def everything(request: web.Request) -> web.Response:
        return web.json_response(vendor.records)

    async def search(request: web.Request) -> web.Response:
        body = await request.json()
        vendor.bodies.append(body)
        return wrap(vendor.slice(int(request.query["offset"]), int(request.query["limit"])), echo=body)

    async def login(request: web.Request) -> web.Response:
        vendor.login_calls += 1
        form = await request.json()
        if form != {"user": "monitor", "secret": "pw-123", "app": "tthc"}:
            return web.json_response({"error": "bad credentials"}, status=401)
        token = "stale" if vendor.bad_login else f"tok-{vendor.login_calls}"
        if not vendor.bad_login:
            vendor.tokens.add(token)
        return web.json_response({"data": {"token": token}})

    async def opencps(request: web.Request) -> web.Response:
        if request.headers.get("groupId") != "35417":
            return web.json_response({"error": "groupId"}, status=400)
        if "end" not in request.query:
            # What makes OpenCPS dangerous: no `end` returns everything at once.
            return web.json_response({"total": len(vendor.records), "data": vendor.records})
        start, end = int(request.query["start"]), int(request.query["end"])
        items = vendor.slice(start, end - start)
        return web.json_response({"total": vendor.total(), "data": items})

    async def national(request: web.Request) -> web.Response:
        start = (int(request.query["trang"]) - 1) * int(request.query["soLuong"])
        return web.json_response({"result": vendor.slice(start, int(request.query["soLuong"]))})

    app = web.Application(middlewares=[web.middleware(guard)])
    app.router.add_get("/page", page)
    app.router.add_get("/offset", offset)
    app.router.add_get("/startend", start_end)
    app.router.add_get("/next", next_link)
    app.router.add_get("/cursor", cursor)
    app.router.add_get("/all", everything)
    app.router.add_post("/search", search)
    app.router.add_post("/login", login)
    app.router.add_get("/o/rest/v2/dossiers", opencps)
    app.router.add_get("/national", national)
    return app


@pytest.fixture
async def vendor() -> AsyncIterator[tuple[Vendor, str]]:
    """A running vendor server and its base URL."""
    state = Vendor()
    server = TestServer(build_app(state), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield state, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def sources() -> AsyncIterator[list[DossierSource]]:
    """Sources made by a test; closed afterwards so no session leaks."""
    made: list[DossierSource] = []
    yield made
    for source in made:
        await source.close()


FIELDS = {
    "code": "soHoSo",
    "status": "trangThai",
    "received_at": "ngayNhan",
    "due_at": "ngayHenTra",
    "unit_code": "donVi.ma",
}


def json_source(made: list[DossierSource], url: str, **options: Any) -> JsonApiSource:
    config = JsonApiSourceConfig.model_validate(
        {
            "name": "vendor",
            "type": "json_api",
            "url": url,
            "fields": FIELDS,
            "date_formats": ["%d/%m/%Y %H:%M:%S"],
            "status_map": {"1": "open", "5": "paused"},
            "items_path": "data.items",
            "total_path": "data.total",
            "page_size": 5,
            **FAST,
            **options,
        }
    )
    source = JsonApiSource(config)
    made.append(source)
    return source


def codes(batch: SyncBatch) -> list[str]:
    return [dossier.code for dossier in batch.dossiers]


EXPECTED_CODES = [f"000.00.12.H12-260301-{index:04d}" for index in range(23)]


# --- paging ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("/page", {"pagination": {"kind": "page"}}),
        ("/page?first=0", {"pagination": {"kind": "page", "first_page": 0}}),
        ("/offset", {"pagination": {"kind": "offset"}}),
        ("/startend", {"pagination": {"kind": "start_end"}}),
        (
            "/next",
            {
                "pagination": {"kind": "next_link", "next_path": "links.next", "size_param": "size"},
                "items_path": "items",
                "total_path": None,
            },
        ),
        (
            "/cursor",
            {
                "pagination": {
                    "kind": "cursor",
                    "cursor_path": "meta.cursor",
                    "cursor_param": "c",
                    "size_param": "n",
                },
                "items_path": "result",
                "total_path": None,
            },
        ),
        ("/all", {"items_path": "", "total_path": None}),
    ],
)
async def test_each_paging_kind_lists_everything(
    vendor: tuple[Vendor, str], sources: list[DossierSource], path: str, options: dict[str, Any]
) -> None:
    """Every paging kind walks the whole listing in order and maps each record."""
    state, base = vendor
    query = dict(part.split("=") for part in path.partition("?")[2].split("&") if part)
    source = json_source(sources, base + path.partition("?")[0], query=query, **options)
    batch = await source.fetch(since=None)
    assert codes(batch) == EXPECTED_CODES
    assert batch.full is True and not batch.rejected and batch.duplicates == 0
    assert batch.dossiers[0].status is DossierStatus.PAUSED and batch.dossiers[1].status is DossierStatus.OPEN
    assert batch.dossiers[0].unit_code == "H12.01"
    assert batch.dossiers[0].due_at == datetime(2026, 3, 6, 17, tzinfo=HCM)
    for dossier in batch.dossiers:
        assert APPLICANT not in repr(dossier) and PHONE not in repr(dossier)
    if options.get("total_path", "data.total"):
        assert batch.total_reported == 23
    if path != "/all":
        assert len(state.requests) == 5  # 23 records in pages of 5


async def test_page_numbers_sent(vendor: tuple[Vendor, str], sources: list[DossierSource]) -> None:
    """Page numbering starts at the configured first page and sends the page size."""
    state, base = vendor
    await json_source(sources, base + "/page", pagination={"kind": "page"}).fetch(since=None)
    assert [(r["page"], r["size"]) for r in state.requests] == [(str(n), "5") for n in range(1, 6)]


async def test_without_total_a_short_page_ends_the_listing(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """With no total, paging stops at the first page shorter than page_size."""
    state, base = vendor
    state.omit_total = True
    state.records = state.records[:20]
    batch = await json_source(sources, base + "/offset", pagination={"kind": "offset"}).fetch(since=None)
    assert len(batch.dossiers) == 20 and batch.total_reported is None
    assert [r["offset"] for r in state.requests] == ["0", "5", "10", "15", "20"]


async def test_server_capping_page_size_is_still_read_whole(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """A server that returns fewer items per page than asked is paged on until its total."""
    state, base = vendor
    state.page_cap = 3
    batch = await json_source(sources, base + "/startend", pagination={"kind": "start_end"}).fetch(since=None)
    assert codes(batch) == EXPECTED_CODES


async def test_post_search_body_sent(vendor: tuple[Vendor, str], sources: list[DossierSource]) -> None:
    """A POST listing sends its JSON body on every page."""
    state, base = vendor
    source = json_source(
        sources,
        base + "/search",
        method="POST",
        body={"filter": {"open": True}},
        pagination={"kind": "offset"},
    )
    assert len((await source.fetch(since=None)).dossiers) == 23
    assert state.bodies == [{"filter": {"open": True}}] * 5


async def test_incremental_sends_modified_since(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """With modified_since_param, a fetch with `since` filters on it and is not a full listing."""
    state, base = vendor
    source = json_source(
        sources,
        base + "/offset",
        pagination={"kind": "offset"},
        modified_since_param="tuNgay",
        modified_since_format="%d/%m/%Y %H:%M:%S",
    )
    assert source.supports_incremental
    since = datetime(2026, 3, 2, 1, 0, tzinfo=ZoneInfo("UTC"))
    batch = await source.fetch(since=since)
    assert batch.full is False
    assert {r["tuNgay"] for r in state.requests} == {"02/03/2026 08:00:00"}
    state.requests.clear()
    assert (await source.fetch(since=None)).full is True
    assert all("tuNgay" not in r for r in state.requests)


async def test_without_incremental_support_since_gives_full_listing(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """A source with no modified filter answers `since` with a full listing, marked full."""
    _, base = vendor
    source = json_source(sources, base + "/offset", pagination={"kind": "offset"})
    assert not source.supports_incremental
    batch = await source.fetch(since=datetime(2026, 3, 1, tzinfo=HCM))
    assert batch.full is True and len(batch.dossiers) == 23


async def test_rejected_and_duplicate_records_in_http_batch(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """Bad records are counted and skipped; a duplicate code keeps its last version."""
    state, base = vendor
    state.records[4] = {**state.records[4], "ngayHenTra": "31/02/2026 10:00:00"}
    state.records[7] = {**state.records[7], "soHoSo": ""}
    state.records[9] = {**state.records[9], "trangThai": "99"}
    state.records[12] = {**state.records[2], "trangThai": "5"}
    batch = await json_source(sources, base + "/offset", pagination={"kind": "offset"}).fetch(since=None)
    assert batch.rejected == {"bad_date": 1, "no_code": 1, "unknown_status": 1}
    assert batch.duplicates == 1 and len(batch.dossiers) == 19
    assert next(d for d in batch.dossiers if d.code.endswith("0002")).status is DossierStatus.PAUSED


# --- auth --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_auth", "client_auth"),
    [
        (("basic", "monitor:pw-123"), {"kind": "basic", "username": "monitor", "password": "pw-123"}),
        (("bearer", "tok-xyz"), {"kind": "bearer", "token": "tok-xyz"}),
        (("api_key", "X-Api-Key", "k-1"), {"kind": "api_key", "header": "X-Api-Key", "key": "k-1"}),
    ],
)
async def test_static_auth_kinds(
    vendor: tuple[Vendor, str], sources: list[DossierSource], server_auth: tuple[str, ...], client_auth: dict
) -> None:
    """Basic, bearer and API-key auth are sent on every page; wrong credentials fail with reason auth."""
    state, base = vendor
    state.auth = server_auth
    ok = json_source(sources, base + "/offset", pagination={"kind": "offset"}, auth=client_auth)
    assert len((await ok.fetch(since=None)).dossiers) == 23
    wrong = {**client_auth, **{key: "wrong" for key in ("password", "token", "key") if key in client_auth}}
    bad = json_source(sources, base + "/offset", pagination={"kind": "offset"}, auth=wrong)
    with pytest.raises(SyncError) as caught:
        await bad.fetch(since=None)
    assert caught.value.reason is SyncFailure.AUTH
    assert "wrong" not in str(caught.value) and "pw-123" not in repr(bad.config)


LOGIN = {
    "kind": "login",
    "username": "monitor",
    "password": "pw-123",
    "body": {"user": "{username}", "secret": "{password}", "app": "tthc"},
    "token_path": "data.token",
    "prefix": "Token ",
}


async def test_login_token_reused_and_renewed_on_401(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """The login token is reused across pages and fetches, and renewed once when it expires."""
    state, base = vendor
    state.auth = ("login",)
    source = json_source(
        sources, base + "/offset", pagination={"kind": "offset"}, auth={**LOGIN, "url": base + "/login"}
    )
    assert len((await source.fetch(since=None)).dossiers) == 23
    assert state.login_calls == 1
    await source.fetch(since=None)
    assert state.login_calls == 1
    state.tokens.clear()  # the server expires every token
    assert len((await source.fetch(since=None)).dossiers) == 23
    assert state.login_calls == 2
    assert state.headers[-1]["Authorization"] == "Token tok-2"


async def test_login_renewal_that_still_gets_401_fails_auth(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """A token refused right after logging in again fails the sync with reason auth (one renewal only)."""
    state, base = vendor
    state.auth = ("login",)
    state.bad_login = True
    source = json_source(
        sources, base + "/offset", pagination={"kind": "offset"}, auth={**LOGIN, "url": base + "/login"}
    )
    with pytest.raises(SyncError) as caught:
        await source.fetch(since=None)
    assert caught.value.reason is SyncFailure.AUTH
    assert state.login_calls == 2


async def test_login_with_wrong_password_fails_auth(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """A refused login is an auth failure, without the password in the message."""
    state, base = vendor
    state.auth = ("login",)
    auth = {**LOGIN, "url": base + "/login", "password": "nope-999"}
    source = json_source(sources, base + "/offset", pagination={"kind": "offset"}, auth=auth)
    with pytest.raises(SyncError) as caught:
        await source.fetch(since=None)
    assert caught.value.reason is SyncFailure.AUTH and "nope-999" not in str(caught.value)


# --- failed syncs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("error_500", SyncFailure.STATUS),
        ("html", SyncFailure.HTML),
        ("html_as_json", SyncFailure.HTML),
        ("not_json", SyncFailure.NOT_JSON),
        ("truncated_body", SyncFailure.NOT_JSON),
        ("no_list", SyncFailure.PARSE),
        ("forbidden", SyncFailure.AUTH),
    ],
)
async def test_failed_sync_modes(
    vendor: tuple[Vendor, str], sources: list[DossierSource], fault: str, reason: SyncFailure
) -> None:
    """Each way a server can fail raises SyncError with its reason and never a partial batch."""
    state, base = vendor
    state.fault = fault
    source = json_source(sources, base + "/offset", pagination={"kind": "offset"}, attempts=2)
    with pytest.raises(SyncError) as caught:
        await source.fetch(since=None)
    assert caught.value.reason is reason
    retried = fault in ("error_500", "html", "html_as_json", "not_json", "truncated_body")
    assert len(state.requests) == (2 if retried else 1)


async def test_timeout(vendor: tuple[Vendor, str], sources: list[DossierSource]) -> None:
    """A page slower than the timeout fails the sync with reason timeout."""
    state, base = vendor
    state.fault = "slow"
    source = json_source(sources, base + "/offset", pagination={"kind": "offset"}, timeout="0.2s", attempts=1)
    started = time.monotonic()
    with pytest.raises(SyncError) as caught:
        await source.fetch(since=None)
    assert caught.value.reason is SyncFailure.TIMEOUT
    assert time.monotonic() - started < 2


async def test_transient_error_is_retried(vendor: tuple[Vendor, str], sources: list[DossierSource]) -> None:
    """A page that fails once and then answers is retried and the sync succeeds."""
    state, base = vendor
    state.fault, state.fault_after, state.fail_times = "error_500", 2, 1
    batch = await json_source(sources, base + "/offset", pagination={"kind": "offset"}).fetch(since=None)
    assert codes(batch) == EXPECTED_CODES
    assert len(state.requests) == 6


async def test_truncated_listing(vendor: tuple[Vendor, str], sources: list[DossierSource]) -> None:
    """Fewer items than the source's own total is a truncated sync."""
    state, base = vendor
    state.report_total = 30
    source = json_source(sources, base + "/offset", pagination={"kind": "offset"})
    with pytest.raises(SyncError) as caught:
        await source.fetch(since=None)
    assert caught.value.reason is SyncFailure.TRUNCATED and "23" in str(caught.value)


async def test_page_failing_midway_fails_whole_fetch(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """When page 3 keeps failing after pages 1-2 succeeded, the whole fetch fails."""
    state, base = vendor
    state.fault, state.fault_after = "error_500", 2
    source = json_source(sources, base + "/offset", pagination={"kind": "offset"}, attempts=3)
    with pytest.raises(SyncError) as caught:
        await source.fetch(since=None)
    assert caught.value.reason is SyncFailure.STATUS
    assert [r["offset"] for r in state.requests] == ["0", "5", "10", "10", "10"]


async def test_connection_refused_is_error(sources: list[DossierSource]) -> None:
    """Nothing listening on the port fails with reason error."""
    server = TestServer(web.Application(), host="127.0.0.1", port=0)
    await server.start_server()
    url = str(server.make_url("/offset"))
    await server.close()
    source = json_source(sources, url, pagination={"kind": "offset"}, attempts=1)
    with pytest.raises(SyncError) as caught:
        await source.fetch(since=None)
    assert caught.value.reason is SyncFailure.ERROR


async def test_injected_session_is_used_and_left_open(vendor: tuple[Vendor, str]) -> None:
    """A shared session is used for requests and not closed by the source."""
    _, base = vendor
    async with aiohttp.ClientSession() as session:
        config = JsonApiSourceConfig.model_validate(
            {
                "name": "v",
                "type": "json_api",
                "url": base + "/all",
                "fields": FIELDS,
                "items_path": "",
                "date_formats": ["%d/%m/%Y %H:%M:%S"],
                "status_map": {"1": "open", "5": "paused"},
            }
        )
        source = build_source(config, session=session)
        assert len((await source.fetch(since=None)).dossiers) == 23
        await source.close()
        assert not session.closed


# --- OpenCPS and national format against the vendor server --------------------------------------------


def opencps_record(index: int) -> dict[str, Any]:
    return {
        "dossierId": index,
        "dossierNo": f"000.00.12.H12-260301-{index:04d}",
        "govAgencyCode": "H12.01",
        "govAgencyName": "UBND xã Long Khánh",
        "serviceCode": "1.001",
        "serviceName": "Thủ tục",
        "receiveDate": "02/03/2026 08:00:00",
        "dueDate": "06/03/2026 17:00:00",
        "extendDate": "",
        "releaseDate": "" if index % 4 else "05/03/2026 10:00:00",
        "finishDate": "",
        "dossierStatus": "processing" if index % 4 else "releasing",
        "lockState": "",
        "online": "true",
        "viaPostal": "0",
        "durationCount": 3.0,
        "durationUnit": 0,
        "applicantName": APPLICANT,
        "contactTelNo": PHONE,
        "modifiedDate": "03/03/2026 10:00:00",
    }


def opencps_source(made: list[DossierSource], base: str, **options: Any) -> OpenCpsSource:
    config = OpenCpsSourceConfig.model_validate(
        {
            "name": "tinh",
            "type": "opencps",
            "base_url": base + "/o/rest/v2",
            "group_id": "35417",
            "username": "admin",
            "password": "pw-123",
            "page_size": 5,
            **FAST,
            **options,
        }
    )
    source = OpenCpsSource(config)
    made.append(source)
    return source


async def test_opencps_always_pages_with_group_and_basic_auth(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """OpenCPS is always paged with start/end, sends groupId and Basic auth, agency=all by default."""
    state, base = vendor
    state.records = [opencps_record(i) for i in range(12)]
    state.auth = ("basic", "admin:pw-123")
    batch = await opencps_source(sources, base).fetch(since=None)
    assert len(batch.dossiers) == 12 and batch.total_reported == 12 and batch.full
    assert [(r["start"], r["end"]) for r in state.requests] == [("0", "5"), ("5", "10"), ("10", "15")]
    assert all(r["agency"] == "all" and "status" not in r for r in state.requests)
    assert all(h["groupId"] == "35417" for h in state.headers)
    statuses = {d.code[-4:]: d.status for d in batch.dossiers}
    assert statuses["0000"] is DossierStatus.FINISHED and statuses["0001"] is DossierStatus.OPEN
    assert all(APPLICANT not in repr(d) and PHONE not in repr(d) for d in batch.dossiers)


async def test_opencps_incremental_and_filters(
    vendor: tuple[Vendor, str], sources: list[DossierSource]
) -> None:
    """Incremental fetches send the modified filter in local dd/MM/yyyy time and no status filter."""
    state, base = vendor
    state.records = [opencps_record(i) for i in range(3)]
    source = opencps_source(sources, base, agencies=["H12.01", "H12.02"], statuses=["processing", "waiting"])
    await source.fetch(since=None)
    assert state.requests[-1]["status"] == "processing,waiting"
    assert state.requests[-1]["agency"] == "H12.01,H12.02"
    batch = await source.fetch(since=datetime(2026, 3, 3, 3, 0, tzinfo=ZoneInfo("UTC")))
    assert batch.full is False
    assert state.requests[-1]["fromModifiedDate"] == "03/03/2026 10:00:00"
    assert "status" not in state.requests[-1]


async def test_dvcqg_source_pages_and_maps(vendor: tuple[Vendor, str], sources: list[DossierSource]) -> None:
    """National-format records are paged as configured and mapped with the default status codes."""
    state, base = vendor
    state.records = [
        {
            "MaHoSo": f"X-{i}",
            "NgayTiepNhan": "20260302080000",
            "NgayHenTra": "20260306170000",
            "TrangThaiHoSo": "5" if i == 1 else "4",
            "ChuHoSo": APPLICANT,
            "SoDienThoai": PHONE,
            "HinhThuc": "1",
        }
        for i in range(7)
    ]
    config = DvcqgSourceConfig.model_validate(
        {
            "name": "dvc",
            "type": "dvcqg",
            "url": base + "/national",
            "items_path": "result",
            "pagination": {"kind": "page", "page_param": "trang", "size_param": "soLuong"},
            "page_size": 3,
            "status_map": {4: "open", 5: "open"},
            **FAST,
        }
    )
    source = DvcqgSource(config)
    sources.append(source)
    batch = await source.fetch(since=None)
    assert [d.code for d in batch.dossiers] == [f"X-{i}" for i in range(7)]
    assert all(d.status is DossierStatus.OPEN and d.via_postal for d in batch.dossiers)
    assert all(APPLICANT not in repr(d) for d in batch.dossiers)


# --- CSV ---------------------------------------------------------------------------------------------

CSV_FIELDS = {
    "code": "Mã hồ sơ",
    "unit_code": "Mã đơn vị",
    "received_at": "Ngày tiếp nhận",
    "due_at": "Ngày hẹn trả",
    "released_at": "Ngày có kết quả",
    "status": "Trạng thái",
    "via_postal": "Trả qua bưu chính",
}
CSV_HEADER = [
    "STT",
    "Mã hồ sơ",
    "Mã đơn vị",
    "Chủ hồ sơ",
    "Số điện thoại",
    "Ngày tiếp nhận",
    "Ngày hẹn trả",
    "Ngày có kết quả",
    "Trạng thái",
    "Trả qua bưu chính",
]


def csv_rows(count: int, start: int = 0, *, status: str = "Đang xử lý") -> list[list[str]]:
    return [
        [
            str(i + 1),
            f"CSV-{i:04d}",
            "H12.01",
            APPLICANT,
            PHONE,
            "02/03/2026 08:00:00",
            "06/03/2026 17:00:00",
            "",
            status,
            "Có" if i % 2 else "Không",
        ]
        for i in range(start, start + count)
    ]


def write_csv(
    path: Path, rows: list[list[str]], *, delimiter: str = ",", bom: bool = False, age: float = 60
) -> None:
    lines = [delimiter.join(CSV_HEADER)] + [delimiter.join(row) for row in rows]
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\r\n".join(lines) + "\r\n").encode("utf-8"))
    # Old enough not to look mid-write.
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def csv_source(path: Path, **options: Any) -> CsvSource:
    config = CsvSourceConfig.model_validate(
        {
            "name": "export",
            "type": "csv",
            "path": str(path),
            "fields": CSV_FIELDS,
            "date_formats": ["%d/%m/%Y %H:%M:%S"],
            "status_map": {"Đang xử lý": "open", "Chờ bổ sung": "paused", "Đã trả kết quả": "finished"},
            **options,
        }
    )
    return CsvSource(config)


@pytest.mark.parametrize(("bom", "delimiter"), [(False, ","), (True, ","), (True, ";"), (False, "\t")])
async def test_csv_with_and_without_bom(tmp_path: Path, bom: bool, delimiter: str) -> None:
    """UTF-8 exports with or without BOM, any usual delimiter sniffed, map like JSON records."""
    path = tmp_path / "export.csv"
    write_csv(path, csv_rows(5), delimiter=delimiter, bom=bom)
    source = csv_source(path)
    batch = await source.fetch(since=None)
    assert [d.code for d in batch.dossiers] == [f"CSV-{i:04d}" for i in range(5)]
    assert batch.full and batch.total_reported == 5
    assert [d.via_postal for d in batch.dossiers] == [False, True, False, True, False]
    assert batch.dossiers[0].due_at == datetime(2026, 3, 6, 17, tzinfo=HCM)
    assert all(APPLICANT not in repr(d) and PHONE not in repr(d) for d in batch.dossiers)
    await source.close()


async def test_csv_folder_reads_every_file_newest_last(tmp_path: Path) -> None:
    """A folder's *.csv files are all read; a code in a newer export wins."""
    write_csv(tmp_path / "b-old.csv", csv_rows(3), age=600)
    write_csv(tmp_path / "a-new.csv", csv_rows(2, start=2, status="Đã trả kết quả"), age=60)
    (tmp_path / "notes.txt").write_text("not an export", encoding="utf-8")
    source = csv_source(tmp_path)
    batch = await source.fetch(since=None)
    assert sorted(d.code for d in batch.dossiers) == ["CSV-0000", "CSV-0001", "CSV-0002", "CSV-0003"]
    assert batch.duplicates == 1
    assert next(d for d in batch.dossiers if d.code == "CSV-0002").status is DossierStatus.FINISHED


async def test_csv_reread_only_on_change(tmp_path: Path) -> None:
    """An unchanged file returns the previous batch without reading; a changed one is read again."""
    path = tmp_path / "export.csv"
    write_csv(path, csv_rows(3))
    source = csv_source(path)
    first = await source.fetch(since=None)
    again = await source.fetch(since=None)
    assert again is first and source.reads == 1
    write_csv(path, csv_rows(4), age=30)
    changed = await source.fetch(since=None)
    assert len(changed.dossiers) == 4 and source.reads == 2


async def test_csv_mid_write_and_unreadable_files_fail(tmp_path: Path) -> None:
    """A just-modified file, a half-written last row, bad encoding or a missing path fail the sync."""
    path = tmp_path / "export.csv"
    write_csv(path, csv_rows(3), age=0)
    with pytest.raises(SyncError, match="modified just now") as caught:
        await csv_source(path).fetch(since=None)
    assert caught.value.reason is SyncFailure.PARSE

    write_csv(path, csv_rows(3))
    with path.open("ab") as handle:
        handle.write(b"4,CSV-0099,H12.01")
    stamp = time.time() - 60
    os.utime(path, (stamp, stamp))
    with pytest.raises(SyncError, match="line 5 has 3 of 10 columns"):
        await csv_source(path).fetch(since=None)

    path.write_bytes(b"M\xe3 h\xf4 s\xf4,x\r\n1,2\r\n")
    os.utime(path, (stamp, stamp))
    with pytest.raises(SyncError, match="is not utf-8"):
        await csv_source(path).fetch(since=None)

    with pytest.raises(SyncError) as missing:
        await csv_source(tmp_path / "nowhere.csv").fetch(since=None)
    assert missing.value.reason is SyncFailure.ERROR


async def test_csv_injectable_clock_for_settle(tmp_path: Path) -> None:
    """The settle check uses the injected clock, so a test needs no sleeping."""
    path = tmp_path / "export.csv"
    write_csv(path, csv_rows(2), age=0)
    mtime = path.stat().st_mtime
    config = csv_source(path).config
    with pytest.raises(SyncError):
        await CsvSource(config, clock=lambda: mtime + 1).fetch(since=None)
    assert len((await CsvSource(config, clock=lambda: mtime + 3).fetch(since=None)).dossiers) == 2


def test_sources_registry() -> None:
    """Every config type has a factory."""
    assert set(SOURCES) == {"opencps", "dvcqg", "json_api", "csv"}


# --- against the built-in simulator ------------------------------------------------------------------


class SimClock:
    """A settable clock for the simulator, so tests move time without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 10, 9, 0, tzinfo=HCM)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def simulator() -> AsyncIterator[tuple[Simulator, SimClock]]:
    """A running simulator of 300 dossiers on 127.0.0.1, with a settable clock."""
    clock = SimClock()
    sim = Simulator(seed=11, clock=clock, dossier_count=300, tls=False, tick_interval=3600)
    await sim.start()
    try:
        yield sim, clock
    finally:
        await sim.stop()


def sim_opencps(made: list[DossierSource], sim: Simulator, **options: Any) -> OpenCpsSource:
    config = OpenCpsSourceConfig.model_validate(
        {
            "name": "sim",
            "type": "opencps",
            "base_url": sim.api_base,
            "group_id": sim.group_id,
            "username": sim.username,
            "password": DEFAULT_PASSWORD,
            "page_size": 100,
            **FAST,
            **options,
        }
    )
    source = OpenCpsSource(config)
    made.append(source)
    return source


def sim_national(made: list[DossierSource], sim: Simulator, **options: Any) -> DvcqgSource:
    config = DvcqgSourceConfig.model_validate(
        {
            "name": "sim-dvc",
            "type": "dvcqg",
            "url": sim.national_url,
            "auth": {"kind": "basic", "username": sim.username, "password": DEFAULT_PASSWORD},
            "items_path": "data",
            "total_path": "total",
            "pagination": {"kind": "page"},
            "modified_since_param": "fromModifiedDate",
            "modified_since_format": "%d/%m/%Y %H:%M:%S",
            "page_size": 100,
            **FAST,
            **options,
        }
    )
    source = DvcqgSource(config)
    made.append(source)
    return source


SIM_STATUS = {
    "processing": DossierStatus.OPEN,
    "waiting": DossierStatus.PAUSED,
    "releasing": DossierStatus.FINISHED,
    "done": DossierStatus.FINISHED,
    "denied": DossierStatus.CANCELLED,
}


def assert_matches_world(batch: SyncBatch, sim: Simulator) -> None:
    """Every received dossier of the simulated world is in the batch with its dates and status."""
    world = {d.dossier_no: d for d in sim.world.dossiers if d.received_at is not None}
    assert {d.code for d in batch.dossiers} == set(world)
    assert +batch.rejected == +Counter({"not_received": len(sim.world.dossiers) - len(world)})
    for dossier in batch.dossiers:
        expected = world[dossier.code]
        assert dossier.received_at == expected.received_at
        assert dossier.due_at == expected.due_at
        assert dossier.status is SIM_STATUS[expected.status]
        assert dossier.unit_code == expected.unit.code
        assert dossier.via_postal is expected.via_postal
        assert dossier.released_at == expected.released_at
        assert dossier.finished_at == expected.finished_at
        if expected.extend_at is not None:
            assert dossier.effective_due_at == max(expected.extend_at, expected.due_at)
    secrets = {d.applicant.name for d in sim.world.dossiers} | {d.applicant.phone for d in sim.world.dossiers}
    for dossier in batch.dossiers:
        # Officers are named from the same name pools, so an assignee may share an applicant's name.
        text = repr(dataclasses.replace(dossier, assignee_name=""))
        assert not any(secret in text for secret in secrets)


async def test_opencps_full_sync_from_simulator(
    simulator: tuple[Simulator, SimClock], sources: list[DossierSource]
) -> None:
    """A full OpenCPS listing from the simulator matches its world, paged, without personal data."""
    sim, _ = simulator
    batch = await sim_opencps(sources, sim).fetch(since=None)
    assert batch.full and batch.total_reported == len(sim.world.dossiers)
    assert_matches_world(batch, sim)


async def test_opencps_incremental_sync_from_simulator(
    simulator: tuple[Simulator, SimClock], sources: list[DossierSource]
) -> None:
    """After time moves on, an incremental fetch returns exactly the dossiers modified since."""
    sim, clock = simulator
    source = sim_opencps(sources, sim)
    since = clock.now
    await source.fetch(since=None)
    clock.now += timedelta(hours=6)
    await sim.advance()
    batch = await source.fetch(since=since)
    changed = {
        d.dossier_no for d in sim.world.dossiers if d.modified_at >= since and d.received_at is not None
    }
    assert batch.full is False and changed
    assert {d.code for d in batch.dossiers} == changed
    assert all(d.modified_at is not None and d.modified_at >= since for d in batch.dossiers)


async def test_national_format_from_simulator(
    simulator: tuple[Simulator, SimClock], sources: list[DossierSource]
) -> None:
    """The national sync endpoint maps to the same dossiers, statuses and due dates as OpenCPS."""
    sim, clock = simulator
    clock.now += timedelta(days=2)
    await sim.advance()
    batch = await sim_national(sources, sim).fetch(since=None)
    assert batch.full and batch.total_reported == len(sim.world.dossiers)
    assert_matches_world(batch, sim)
    supplemented = [d for d in sim.world.dossiers if d.supplements]
    by_code = {d.code: d for d in batch.dossiers}
    for dossier in supplemented:
        assert by_code[dossier.dossier_no].effective_due_at >= dossier.supplements[-1].new_due


async def test_csv_export_from_simulator(simulator: tuple[Simulator, SimClock], tmp_path: Path) -> None:
    """An officer's CSV export (BOM, Vietnamese headers) maps by header like the APIs."""
    sim, _ = simulator
    basic = base64.b64encode(f"{sim.username}:{DEFAULT_PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}"}
    async with aiohttp.ClientSession(headers=headers) as session, session.get(sim.csv_url) as response:
        assert response.status == 200
        payload = await response.read()
    path = tmp_path / "danh-sach-ho-so.csv"
    path.write_bytes(payload)
    stamp = time.time() - 60
    os.utime(path, (stamp, stamp))
    config = CsvSourceConfig.model_validate(
        {
            "name": "sim-csv",
            "type": "csv",
            "path": str(path),
            "fields": {
                "code": "Mã hồ sơ",
                "procedure_code": "Mã thủ tục",
                "unit_code": "Mã đơn vị",
                "unit_name": "Đơn vị xử lý",
                "received_at": "Ngày tiếp nhận",
                "due_at": "Ngày hẹn trả",
                "extended_due_at": "Ngày gia hạn",
                "released_at": "Ngày có kết quả",
                "finished_at": "Ngày trả kết quả",
                "status": "Trạng thái",
                "assignee_name": "Cán bộ xử lý",
                "via_postal": "Trả qua bưu chính",
            },
            "date_formats": ["%d/%m/%Y %H:%M:%S"],
            "status_map": {
                "Mới đăng ký": "open",
                "Đang xử lý": "open",
                "Chờ bổ sung": "paused",
                "Chờ trả kết quả": "finished",
                "Đã trả kết quả": "finished",
                "Từ chối giải quyết": "cancelled",
            },
        }
    )
    batch = await CsvSource(config).fetch(since=None)
    received = [d for d in sim.world.dossiers if d.received_at is not None]
    assert len(batch.dossiers) == len(received)
    assert +batch.rejected == +Counter({"no_due_date": len(sim.world.dossiers) - len(received)})
    by_code = {d.code: d for d in batch.dossiers}
    for expected in received:
        dossier = by_code[expected.dossier_no]
        assert dossier.due_at == expected.due_at and dossier.via_postal is expected.via_postal
        assert expected.applicant.phone not in repr(dossier)
        assert expected.applicant.name not in repr(dataclasses.replace(dossier, assignee_name=""))


@pytest.mark.parametrize(
    ("fault", "options", "reason"),
    [
        ("html_error", {}, SyncFailure.HTML),
        ("error_5xx", {}, SyncFailure.STATUS),
        ("truncated", {"variant": "short"}, SyncFailure.TRUNCATED),
        ("truncated", {"variant": "cut"}, SyncFailure.NOT_JSON),
        ("slow", {"delay": "2s"}, SyncFailure.TIMEOUT),
        ("maintenance", {}, SyncFailure.HTML),
    ],
)
@pytest.mark.parametrize("kind", ["opencps", "dvcqg"])
async def test_simulator_faults_fail_the_sync(
    simulator: tuple[Simulator, SimClock],
    sources: list[DossierSource],
    kind: str,
    fault: str,
    options: dict[str, Any],
    reason: SyncFailure,
) -> None:
    """Each API fault of the simulator makes the whole fetch fail with the matching reason."""
    sim, _ = simulator
    await sim.set_fault(fault, "api", **options)
    factory = sim_opencps if kind == "opencps" else sim_national
    source = factory(sources, sim, timeout="0.3s", attempts=2)
    with pytest.raises(SyncError) as caught:
        await source.fetch(since=None)
    assert caught.value.reason is reason
    await sim.clear_faults()
    assert len((await source.fetch(since=None)).dossiers) > 0


async def test_simulator_empty_fault_is_reported_not_judged(
    simulator: tuple[Simulator, SimClock], sources: list[DossierSource]
) -> None:
    """An empty listing with total 0 is returned as such; judging it suspicious is the manager's job."""
    sim, _ = simulator
    await sim.set_fault("empty", "api")
    batch = await sim_opencps(sources, sim).fetch(since=None)
    assert batch.dossiers == () and batch.total_reported == 0 and batch.full


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"password": "wrong-password"}, SyncFailure.AUTH),
        ({"group_id": "99999"}, SyncFailure.AUTH),
    ],
)
async def test_simulator_refuses_bad_credentials(
    simulator: tuple[Simulator, SimClock],
    sources: list[DossierSource],
    options: dict[str, Any],
    reason: SyncFailure,
) -> None:
    """A wrong password or a group the account has no right to fails with reason auth."""
    sim, _ = simulator
    with pytest.raises(SyncError) as caught:
        await sim_opencps(sources, sim, **options).fetch(since=None)
    assert caught.value.reason is reason
    assert "wrong-password" not in str(caught.value)


async def test_simulator_down_is_connection_error(
    simulator: tuple[Simulator, SimClock], sources: list[DossierSource]
) -> None:
    """A stopped dossier system fails the sync with reason error."""
    sim, _ = simulator
    await sim.set_fault("down")
    with pytest.raises(SyncError) as caught:
        await sim_opencps(sources, sim).fetch(since=None)
    assert caught.value.reason is SyncFailure.ERROR
