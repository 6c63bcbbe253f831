"""Tests of the built-in dossier-system simulator, through real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import re
import ssl
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from monitor.simulator import (
    CSV_HEADERS,
    MAINTENANCE_MARKER,
    PORTAL_MARKER,
    ScheduledFault,
    Simulator,
    World,
    make_ca_and_leaf,
)
from monitor.simulator.runner import run_forever
from monitor.simulator.worktime import VN, add_working, from_line, sub_working, to_line, working_between

START = datetime(2026, 11, 26, 9, 0, tzinfo=VN)  # a Thursday
DATE = re.compile(r"^\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}$")
NATIONAL_DATE = re.compile(r"^\d{14}$")
DOSSIER_NO = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.H\d{2}-\d{6}-\d{4}$")


def basic(username: str, password: str) -> dict[str, str]:
    """An Authorization header (aiohttp.BasicAuth is deprecated in the installed aiohttp)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


BASIC = basic("admin", "s3cret-pass")
HEADERS = {"groupId": "35402"}
API_HEADERS = {**BASIC, **HEADERS}


class FakeClock:
    """An injectable clock that tests move by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def local(text: str) -> datetime:
    return datetime.strptime(text, "%d/%m/%Y %H:%M:%S").replace(tzinfo=VN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Simulator]:
    simulator = Simulator(seed=7, clock=clock, password="s3cret-pass", state_dir=tmp_path)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str, **params: str | int) -> dict:
    async with http.get(url, params=params, headers=API_HEADERS) as response:
        assert response.status == 200, await response.text()
        return await response.json()


# --- OpenCPS list API ------------------------------------------------------------------------------


async def test_paging_with_start_end_and_total(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Pages of start/end carry the full total and together list every dossier once, in id order."""
    everything = await get_json(http, f"{sim.api_base}/dossiers")
    total = everything["total"]
    assert total == len(everything["data"]) == 300
    collected = []
    for start in range(0, total, 70):
        page = await get_json(http, f"{sim.api_base}/dossiers", start=start, end=start + 70)
        assert page["total"] == total
        assert len(page["data"]) == min(70, total - start)
        collected.extend(item["dossierId"] for item in page["data"])
    assert collected == [item["dossierId"] for item in everything["data"]]
    assert collected == sorted(collected)


async def test_unpaged_returns_everything(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Without end, or with end=0, the list API returns every dossier like the real OpenCPS."""
    no_end = await get_json(http, f"{sim.api_base}/dossiers")
    end_zero = await get_json(http, f"{sim.api_base}/dossiers", start=0, end=0)
    assert len(no_end["data"]) == len(end_zero["data"]) == len(sim.world.dossiers)


async def test_auth_and_group_id_errors(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """No or wrong credentials give 401; a missing groupId 400 and a wrong one 403, all as JSON."""
    url = f"{sim.api_base}/dossiers"
    async with http.get(url, headers=HEADERS) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert (await response.json())["code"] == 401
    async with http.get(url, headers={**HEADERS, **basic("admin", "wrong")}) as response:
        assert response.status == 401
    async with http.get(url, headers=BASIC) as response:
        assert response.status == 400
        assert "groupId" in (await response.json())["description"]
    async with http.get(url, headers={**BASIC, "groupId": "99999"}) as response:
        assert response.status == 403
        assert (await response.json())["code"] == 403


async def test_item_shape(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Items follow opencps.md: string dates dd/MM/yyyy HH:mm:ss or empty, PAUSE when waiting, codes."""
    data = (await get_json(http, f"{sim.api_base}/dossiers"))["data"]
    statuses = {item["dossierStatus"] for item in data}
    assert {"processing", "waiting"} <= statuses
    for item in data:
        assert DOSSIER_NO.match(item["dossierNo"]), item["dossierNo"]
        assert isinstance(item["dossierId"], int) and isinstance(item["lastActionUserId"], int)
        assert isinstance(item["durationCount"], float) and item["durationUnit"] in (0, 1)
        for name in ("receiveDate", "dueDate", "extendDate", "releaseDate", "finishDate", "modifiedDate"):
            assert item[name] == "" or DATE.match(item[name]), (name, item[name])
        assert item["online"] in ("true", "false") and item["viaPostal"] in ("0", "1")
        if item["dossierStatus"] == "waiting":
            assert item["lockState"] == "PAUSE"
        if item["dossierStatus"] in ("processing", "waiting"):
            assert item["currentActionUser"] and item["dueDate"] and item["releaseDate"] == ""
            assert item["dueDateComing"].isdigit()
        if item["dossierStatus"] in ("releasing", "done"):
            assert item["releaseDate"]
        if item["dossierStatus"] == "done":
            assert item["finishDate"]
        if item["extendDate"]:
            assert local(item["extendDate"]) > local(item["dueDate"])
        assert item["applicantName"]
    open_items = [item for item in data if item["dossierStatus"] == "processing"]
    now = START
    assert any(local(item["dueDate"]) < now for item in open_items), "some should be overdue"
    assert any(local(item["dueDate"]).date() == now.date() for item in open_items), "some due today"
    assert any(local(item["dueDate"]) > now + timedelta(days=3) for item in open_items)
    units = {item["govAgencyName"] for item in data}
    assert {
        "Sở Nông nghiệp và Môi trường",
        "Trung tâm Phục vụ hành chính công phường An Bình",
        "Trung tâm Phục vụ hành chính công xã Long Khánh",
    } <= units


async def test_status_agency_and_number_filters(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """status and agency take comma lists (agency=all means no filter); dossierNo finds one."""
    url = f"{sim.api_base}/dossiers"
    everything = (await get_json(http, url))["data"]
    selected = await get_json(http, url, status="waiting,releasing")
    expected = [item for item in everything if item["dossierStatus"] in ("waiting", "releasing")]
    assert selected["total"] == len(expected) > 0
    assert [item["dossierId"] for item in selected["data"]] == [item["dossierId"] for item in expected]
    codes = "000.30.12.H12,001.03.12.H12"
    by_agency = await get_json(http, url, agency=codes)
    assert by_agency["total"] == sum(item["govAgencyCode"] in codes.split(",") for item in everything) > 0
    assert {item["govAgencyCode"] for item in by_agency["data"]} <= set(codes.split(","))
    assert (await get_json(http, url, agency="all"))["total"] == len(everything)
    target = everything[42]["dossierNo"]
    found = await get_json(http, url, dossierNo=target)
    assert [item["dossierNo"] for item in found["data"]] == [target]
    one = await get_json(http, f"{url}/{target}")
    assert one["dossierId"] == everything[42]["dossierId"]
    assert (await get_json(http, f"{url}/{one['dossierId']}"))["dossierNo"] == target
    async with http.get(f"{url}/nope", headers=API_HEADERS) as response:
        assert response.status == 404


async def test_modified_filter_returns_only_changes(
    sim: Simulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """fromModifiedDate (dd/MM/yyyy HH:mm:ss) returns exactly the dossiers changed since then."""
    url = f"{sim.api_base}/dossiers"
    before = {item["dossierId"]: item for item in (await get_json(http, url))["data"]}
    since = clock.now.strftime("%d/%m/%Y %H:%M:%S")
    clock.now += timedelta(hours=3)
    after = {item["dossierId"]: item for item in (await get_json(http, url))["data"]}
    changed = {key for key, item in after.items() if before.get(key) != item}
    assert changed
    incremental = await get_json(http, url, fromModifiedDate=since)
    assert {item["dossierId"] for item in incremental["data"]} == changed
    assert all(local(item["modifiedDate"]) >= local(since) for item in incremental["data"])
    async with http.get(url, params={"fromModifiedDate": "2026-11-26"}, headers=API_HEADERS) as response:
        assert response.status == 400


# --- time moving --------------------------------------------------------------------------------------


async def test_time_moves_dossiers_through_their_life(
    sim: Simulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Advancing two weeks finishes dossiers early, on time and late, resumes paused ones, extends some."""
    url = f"{sim.api_base}/dossiers"
    before = {item["dossierId"]: item for item in (await get_json(http, url))["data"]}
    clock.now += timedelta(days=14)
    report = await sim.advance()
    assert report.arrived > 0 and report.released > 0 and report.resumed > 0 and report.extended > 0
    after = {item["dossierId"]: item for item in (await get_json(http, url))["data"]}
    assert len(after) == len(before) + report.arrived
    outcomes = set()
    for key, item in after.items():
        old = before.get(key)
        if old is not None and old["releaseDate"] == "" and item["releaseDate"]:
            assert item["dossierStatus"] in ("releasing", "done")
            released, due = local(item["releaseDate"]), local(item["dueDate"])
            session_start = (
                due.replace(hour=7, minute=0, second=0)
                if due.hour < 12
                else due.replace(hour=13, minute=30, second=0)
            )
            outcomes.add("early" if released < session_start else "on_time" if released <= due else "late")
    assert outcomes == {"early", "on_time", "late"}
    resumed = [
        (before[key], item)
        for key, item in after.items()
        if key in before and before[key]["dossierStatus"] == "waiting" and item["lockState"] == ""
    ]
    assert resumed
    for old, new in resumed:
        assert local(new["dueDate"]) > local(old["dueDate"])
    newly_extended = [
        item
        for key, item in after.items()
        if key in before and not before[key]["extendDate"] and item["extendDate"]
    ]
    assert newly_extended
    assert all(local(item["extendDate"]) > local(item["dueDate"]) for item in newly_extended)
    changed = [item for key, item in after.items() if before.get(key) != item]
    assert all(local(item["modifiedDate"]) > START for item in changed)


def test_time_moving_is_deterministic_whatever_the_steps() -> None:
    """Same seed and start give the same data, whether time moves in one jump or many small steps."""
    one, many = World(3, START, 200), World(3, START, 200)
    one.simulate_until(START + timedelta(days=5))
    moment = START
    while moment < START + timedelta(days=5):
        moment += timedelta(minutes=17)
        many.simulate_until(min(moment, START + timedelta(days=5)))
    assert [d.item_bytes("1") for d in one.dossiers] == [d.item_bytes("1") for d in many.dossiers]
    assert World(4, START, 200).dossiers[0].dossier_no != "" and [
        d.item_bytes("1") for d in World(3, START, 200).dossiers
    ] != [d.item_bytes("1") for d in World(4, START, 200).dossiers]


# --- national sync and CSV ------------------------------------------------------------------------------


async def test_national_sync_shape(sim: Simulator, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    """/dvcqg/hoso pages DongBoHoSoMC records with yyyyMMddHHmmss dates and supplement history."""
    clock.now += timedelta(days=10)
    first = await get_json(http, sim.national_url, page=1, size=100)
    total = first["total"]
    assert first["service"] == "DongBoHoSoMC" and len(first["data"]) == 100
    records = list(first["data"])
    for page in range(2, total // 100 + 2):
        records.extend((await get_json(http, sim.national_url, page=page, size=100))["data"])
    assert len(records) == total
    for record in records:
        for name in ("MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "ChuHoSo", "DonViXuLy"):
            assert isinstance(record[name], str) and record[name]
        for name in ("NgayTiepNhan", "NgayHenTra", "NgayTra", "NgayKetThucXuLy"):
            assert record[name] == "" or NATIONAL_DATE.match(record[name])
        assert 1 <= int(record["TrangThaiHoSo"]) <= 10
        assert record["HinhThuc"] in ("0", "1")
        if record["TrangThaiHoSo"] == "10":
            assert record["NgayTra"] and record["NgayKetThucXuLy"]
    supplements = [s for record in records for s in record["DanhSachHoSoBoSung"]]
    assert supplements
    for supplement in supplements:
        assert NATIONAL_DATE.match(supplement["NgayHenTraTruoc"]) and NATIONAL_DATE.match(
            supplement["NgayHenTraMoi"]
        )
        assert supplement["NgayHenTraMoi"] > supplement["NgayHenTraTruoc"]
    assert any(record["HinhThuc"] == "1" for record in records)


async def test_csv_export_has_bom_and_parses(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """The CSV export is UTF-8 with a BOM, Vietnamese headers, one row per dossier."""
    async with http.get(sim.csv_url, headers=BASIC) as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        raw = await response.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == len(sim.world.dossiers)
    assert tuple(rows[0]) == CSV_HEADERS
    assert all(DOSSIER_NO.match(row["Mã hồ sơ"]) for row in rows)
    assert all(row["Ngày hẹn trả"] == "" or DATE.match(row["Ngày hẹn trả"]) for row in rows)
    async with http.get(sim.csv_url) as response:
        assert response.status == 401


# --- portal, app, login ------------------------------------------------------------------------------


async def test_portal_app_login_and_tls(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """The portal shows its marker over HTTP and HTTPS; the app login gives a token and a cookie."""
    async with http.get(sim.portal_url) as response:
        assert response.status == 200 and PORTAL_MARKER in await response.text()
    assert sim.ca_file is not None and sim.ca_file.name == "sim-ca.pem"
    verified = ssl.create_default_context(cafile=str(sim.ca_file))
    async with http.get(sim.https_url, ssl=verified) as response:
        assert PORTAL_MARKER in await response.text()
    async with http.get(sim.app_url) as response:
        page = await response.text()
        assert "<form" in page and "name='password'" in page
    async with http.post(sim.login_url, data={"username": "admin", "password": "bad"}) as response:
        assert response.status == 401
    async with http.post(sim.login_url, json={"username": "admin", "password": "s3cret-pass"}) as response:
        assert response.status == 200
        token = (await response.json())["token"]
        assert response.cookies["JSESSIONID"].value == token
    async with http.get(sim.dashboard_url, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200 and "Danh sách hồ sơ" in await response.text()
    async with http.get(sim.dashboard_url, allow_redirects=False) as response:
        assert response.status == 302
    assert "s3cret-pass" not in repr(sim)


# --- faults ----------------------------------------------------------------------------------------------


async def test_down_refuses_connections_then_comes_back_on_the_same_port(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """`down` stops the public listeners (connection refused) while admin stays up; clearing restores them."""
    port, tls_port = sim.port, sim.tls_port
    async with http.get(sim.portal_url) as response:
        assert response.status == 200
    async with http.post(f"{sim.admin_url}/faults", json={"fault": "down"}) as response:
        assert response.status == 201
    with pytest.raises(aiohttp.ClientConnectorError):
        async with http.get(sim.portal_url):
            pass
    with pytest.raises(aiohttp.ClientConnectorError):
        async with http.get(sim.https_url, ssl=False):
            pass
    async with http.get(f"{sim.admin_url}/faults") as response:
        assert [f["fault"] for f in (await response.json())["faults"]] == ["down"]
    async with http.delete(f"{sim.admin_url}/faults") as response:
        assert (await response.json())["cleared"] == 1
    assert (sim.port, sim.tls_port) == (port, tls_port)
    async with http.get(sim.portal_url) as response:
        assert PORTAL_MARKER in await response.text()


async def test_expired_and_expiring_certificates(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """expired_cert makes a verifying handshake fail; cert_expiring serves one with days left."""
    verified = ssl.create_default_context(cafile=str(sim.ca_file))
    await sim.set_fault("expired_cert")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        async with http.get(sim.https_url, ssl=verified):
            pass
    await sim.clear_faults()
    await sim.set_fault("cert_expiring")
    _, writer = await asyncio.open_connection("127.0.0.1", sim.tls_port, ssl=verified)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    left = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp() - time.time()
    assert 3 * 86400 < left < 7 * 86400


async def test_page_faults(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """maintenance, html_error and error_5xx replace the reply; their scope leaves other parts alone."""
    await sim.set_fault("maintenance", "portal")
    async with http.get(sim.portal_url) as response:
        assert response.status == 200 and MAINTENANCE_MARKER in await response.text()
    assert (await get_json(http, f"{sim.api_base}/dossiers", start=0, end=1))["total"] == 300
    await sim.set_fault("html_error", "api")
    async with http.get(f"{sim.api_base}/dossiers", headers=API_HEADERS) as response:
        assert response.status == 200 and response.content_type == "text/html"
        with pytest.raises(json.JSONDecodeError):
            json.loads(await response.text())
    await sim.clear_faults()
    await sim.set_fault("error_5xx", "app", status=500)
    async with http.get(sim.app_url) as response:
        assert response.status == 500
    async with http.get(sim.portal_url) as response:
        assert response.status == 200 and PORTAL_MARKER in await response.text()


async def test_api_data_faults(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """truncated gives fewer items than total or cut-off JSON; empty gives total 0."""
    url = f"{sim.api_base}/dossiers"
    await sim.set_fault("truncated", "api")
    page = await get_json(http, url, start=0, end=100)
    assert page["total"] == 300 and len(page["data"]) == 50
    await sim.set_fault("truncated", "api", variant="cut")
    async with http.get(url, params={"start": 0, "end": 100}, headers=API_HEADERS) as response:
        text = await response.text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    await sim.clear_faults()
    await sim.set_fault("empty", "api")
    assert await get_json(http, url) == {"total": 0, "data": []}
    await sim.clear_faults()
    assert (await get_json(http, url))["total"] == 300


async def test_slow_fault_and_admin_validation(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """slow delays replies by its delay; the admin API rejects unknown faults with a short message."""
    async with http.post(
        f"{sim.admin_url}/faults", json={"fault": "slow", "scope": "portal", "delay": "300ms"}
    ):
        pass
    started = time.monotonic()
    async with http.get(sim.portal_url) as response:
        assert response.status == 200
    assert time.monotonic() - started >= 0.3
    async with http.post(f"{sim.admin_url}/faults", json={"fault": "meltdown"}) as response:
        assert response.status == 400
        assert "unknown fault" in (await response.json())["error"]
    async with http.post(f"{sim.admin_url}/faults", json={"fault": "down", "scope": "moon"}) as response:
        assert response.status == 400


async def test_fault_duration_and_schedule_follow_the_clock(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    """A scheduled down window starts and ends on the injected clock; a timed fault expires by itself."""
    schedule = [
        ("down", "10m", "5m"),
        ScheduledFault("maintenance", timedelta(hours=1), timedelta(minutes=5)),
    ]
    simulator = Simulator(
        seed=1, clock=clock, dossier_count=20, tls=False, state_dir=tmp_path, schedule=schedule
    )
    await simulator.start()
    try:
        assert simulator.is_up
        clock.now += timedelta(minutes=11)
        await simulator.advance()
        with pytest.raises(aiohttp.ClientConnectorError):
            async with http.get(simulator.portal_url):
                pass
        clock.now += timedelta(minutes=5)
        await simulator.advance()
        async with http.get(simulator.portal_url) as response:
            assert PORTAL_MARKER in await response.text()
        clock.now += timedelta(minutes=45)
        async with http.get(simulator.portal_url) as response:
            assert MAINTENANCE_MARKER in await response.text()
        clock.now += timedelta(minutes=10)
        await simulator.set_fault("error_5xx", duration="1m")
        async with http.get(simulator.portal_url) as response:
            assert response.status == 503
        clock.now += timedelta(minutes=1)
        async with http.get(simulator.portal_url) as response:
            assert response.status == 200 and PORTAL_MARKER in await response.text()
    finally:
        await simulator.stop()


# --- scale, working time, certificates, entry point --------------------------------------------------------


async def test_large_data_set_pages_by_slicing(tmp_path: Path, clock: FakeClock) -> None:
    """20,000 dossiers generate quickly and page in 500s with a stable total and no gaps."""
    started = time.monotonic()
    simulator = Simulator(seed=2, clock=clock, dossier_count=20_000, tls=False, password="s3cret-pass")
    await simulator.start()
    try:
        async with aiohttp.ClientSession() as http:
            ids: list[int] = []
            for start in range(0, 20_000, 500):
                page = await get_json(http, f"{simulator.api_base}/dossiers", start=start, end=start + 500)
                assert page["total"] == 20_000
                ids.extend(item["dossierId"] for item in page["data"])
        assert ids == list(range(1, 20_001))
    finally:
        await simulator.stop()
    assert time.monotonic() - started < 30


def test_working_time_arithmetic() -> None:
    """Working time skips lunch (11:30-13:30), nights and weekends; 8 working hours make a day."""
    friday_11 = datetime(2026, 11, 27, 11, 0, tzinfo=VN)
    assert add_working(friday_11, 3600) == datetime(2026, 11, 27, 14, 0, tzinfo=VN)
    assert add_working(friday_11, 8 * 3600) == datetime(2026, 11, 30, 11, 0, tzinfo=VN)
    assert sub_working(datetime(2026, 11, 30, 7, 30, tzinfo=VN), 3600) == datetime(
        2026, 11, 27, 16, 30, tzinfo=VN
    )
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=VN)
    assert working_between(saturday, datetime(2026, 11, 30, 8, 0, tzinfo=VN)) == 3600
    morning = datetime(2026, 11, 26, 7, 0, tzinfo=VN)
    assert add_working(morning, 8 * 3600) == datetime(2026, 11, 26, 17, 0, tzinfo=VN)
    assert from_line(to_line(datetime(2026, 11, 26, 15, 20, 5, tzinfo=VN))) == datetime(
        2026, 11, 26, 15, 20, 5, tzinfo=VN
    )


def test_certificates_with_chosen_validity() -> None:
    """make_ca_and_leaf mints a CA and a leaf with the requested notBefore / notAfter."""
    not_before = datetime(2020, 1, 1, tzinfo=VN)
    not_after = datetime(2021, 1, 1, tzinfo=VN)
    ca, leaf = make_ca_and_leaf(not_before=not_before, not_after=not_after)
    cert = x509.load_pem_x509_certificate(leaf.cert_pem)
    assert cert.not_valid_after_utc == not_after
    assert cert.not_valid_before_utc == not_before
    assert cert.issuer == x509.load_pem_x509_certificate(ca.cert_pem).subject
    assert b"PRIVATE KEY" not in repr(leaf).encode() and b"PRIVATE KEY" in leaf.key_pem


async def test_run_forever_prints_urls_and_stops(tmp_path: Path) -> None:
    """run_forever serves until its stop event is set, after printing every URL."""
    out = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_forever("127.0.0.1:0", dossier_count=10, state_dir=tmp_path, out=out, stop=stop)
    )
    for _ in range(200):
        if "ca_file" in out.getvalue():
            break
        await asyncio.sleep(0.02)
    portal = re.search(r"portal_url\s+(\S+)", out.getvalue())
    assert portal is not None
    async with aiohttp.ClientSession() as http, http.get(portal.group(1)) as response:
        assert PORTAL_MARKER in await response.text()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert (tmp_path / "sim-ca.pem").is_file()


def test_code_prefix_gives_distinct_codes_and_the_same_data_otherwise() -> None:
    """A code prefix stands before every dossierNo and changes nothing else (several simulated systems)."""
    plain, prefixed = World(3, START, 50), World(3, START, 50, code_prefix="S2-")
    assert [f"S2-{d.dossier_no}" for d in plain.dossiers] == [d.dossier_no for d in prefixed.dossiers]
    assert [d.due_at for d in plain.dossiers] == [d.due_at for d in prefixed.dossiers]
