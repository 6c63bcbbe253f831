"""The monthly SLA report on a known series in a real SQLite store: an incident across the month start,
one across a monitor stop (a heartbeat gap, left out), one across the month end, failures inside a
maintenance window; dossier
returns and overdue crossings per unit; the CLI in every format; agreement with `tthc-monitor uptime`
and /api/v1/targets/{name}/uptime; the HTML printed to A4 PDF in headless Chromium. The per-unit dossier
figures also run on both engines (`test_unit_figures_are_the_same_on_both_engines`)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from monitor.calendar import Calendars
from monitor.config import load_config_text
from monitor.daemon import Daemon
from monitor.dossiers.store import DossierStore
from monitor.durations import format_duration
from monitor.model import FailureReason, Health, ProbeOutcome
from monitor.reports.render import render
from monitor.reports.sla import Month, UnitSla, build_report, parse_month, unit_figures
from monitor.store import ProbeResult, SqliteStore, SqlStore
from monitor.store.availability import Span
from monitor.store.heartbeat import Heartbeat
from tests.browser import ARTIFACTS, chromium_path, open_browser
from tests.store_engines import StoreFactory

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
MONTH = Month(2025, 10)
OK = ProbeOutcome(success=True)
TIMEOUT = ProbeOutcome(success=False, reason=FailureReason.TIMEOUT, detail="timed out")
STEP = timedelta(minutes=2)


def local(day: str, clock: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=ZONE)


# portal: watched from 25 Sep to 5 Nov.
# A: across the month start, 4 h, 2 h of it in October (00:00-02:00, outside working hours).
A = (local("2025-09-30", "22:00"), local("2025-10-01", "02:00"), "timeout")
# B: Tuesday 11:00-14:00, across a monitor stop (off 11:20-12:40: no samples, no heartbeats). The
# 80 min off are unmonitored, not down: 100 min count, 50 of them inside the sessions 07:00-11:30 and
# 13:30-17:00 (11:00-11:20 and 13:30-14:00).
B = (local("2025-10-14", "11:00"), local("2025-10-14", "14:00"), "refused")
RESTART = (local("2025-10-14", "11:20"), local("2025-10-14", "12:40"))
GAP = (RESTART[1] - RESTART[0]).total_seconds()
B_COUNTED = 3 * 3600 - GAP
# C: across the month end, 1 h of it in October.
C = (local("2025-10-31", "23:00"), local("2025-11-01", "01:00"), "status")
# A planned maintenance window (in the config) 22:00-23:00 on Monday 20 Oct; incident E started half an
# hour before it and ended inside it: only its first half hour counts. Probes inside the window fail and
# are marked as maintenance, as the scheduler does.
MAINTENANCE = (local("2025-10-20", "22:00"), local("2025-10-20", "23:00"))
E = (local("2025-10-20", "21:30"), local("2025-10-20", "22:30"), "timeout")
# motcua-db: added 11 Oct, removed 20 Oct after its 12:00 probe; one 30 min incident.
DB_FIRST, DB_LAST = local("2025-10-11", "00:00"), local("2025-10-20", "12:00")
D = (local("2025-10-15", "14:00"), local("2025-10-15", "14:30"), "timeout")

OCTOBER_SECONDS = 31 * 86400
# With the config (maintenance known): A 2 h + B 100 min + E 30 min + C 1 h, over October minus the
# window and minus the monitor's stop.
PORTAL_DOWN = 2 * 3600 + B_COUNTED + 1800 + 3600
PORTAL_MONITORED = OCTOBER_SECONDS - 3600 - GAP
# From the store alone, nothing says 22:00-23:00 was planned: E counts whole, the window is monitored.
PORTAL_DOWN_STORE_ONLY = PORTAL_DOWN + 1800
DB_MONITORED = (local("2025-10-20", "13:00") - DB_FIRST).total_seconds() - GAP


def _samples(name: str, start: datetime, end: datetime, down: list[tuple[datetime, datetime]]) -> Iterator:
    at = start
    while at <= end:
        failing = any(a <= at < b for a, b in down)
        maintenance = MAINTENANCE[0] <= at < MAINTENANCE[1] and name == "portal"
        outcome = TIMEOUT if failing or maintenance else OK
        health = Health.DOWN if failing else Health.UP
        yield ProbeResult(name, at.astimezone(UTC), 0.05, outcome, health, in_maintenance=maintenance)
        at += STEP


async def _incident(store: SqlStore, name: str, spec: tuple) -> int:
    incident = await store.open_incident(name, spec[0], spec[2], "connection refused by 10.0.3.7")
    await store.close_incident(incident, spec[1])
    return incident


async def _dossiers(store: SqlStore) -> None:
    """Returns and overdue crossings of two units around October (epoch seconds, like the sync writes)."""

    def ts(day: str, clock: str) -> int:
        return round(local(day, clock).timestamp())

    returned = [
        # code, unit, returned_at, timeliness, via_postal
        ("H12.1", "000.20.12.H12", ts("2025-10-02", "09:00"), "early", 1),
        ("H12.2", "000.20.12.H12", ts("2025-10-03", "09:00"), "early", 0),
        ("H12.3", "000.20.12.H12", ts("2025-10-06", "09:00"), "early", 0),
        ("H12.4", "000.20.12.H12", ts("2025-10-07", "15:00"), "on_time", 1),
        ("H12.5", "000.20.12.H12", ts("2025-10-08", "15:00"), "on_time", 0),
        ("H12.6", "000.20.12.H12", ts("2025-10-31", "16:00"), "late", 0),
        ("H12.7", "000.20.12.H12", ts("2025-09-30", "23:30"), "on_time", 0),  # September
        ("H12.8", "000.20.12.H12", ts("2025-11-01", "00:30"), "late", 0),  # November
        ("LKA.1", "001.01.12.H12", ts("2025-10-21", "10:00"), "late", 0),
    ]
    names = {"000.20.12.H12": "Phòng Tài nguyên và Môi trường", "001.01.12.H12": "UBND xã Long Khánh A"}
    crossings = [
        # code, unit, crossed_at, outage_overlap
        ("H12.6", "000.20.12.H12", ts("2025-10-20", "17:00"), 1),
        ("H12.9", "000.20.12.H12", ts("2025-10-24", "17:00"), 0),
        ("H12.8", "000.20.12.H12", ts("2025-09-29", "17:00"), 0),  # September
        ("LKA.1", "001.01.12.H12", ts("2025-10-14", "11:30"), 1),
    ]
    async with store.transaction() as conn:
        await conn.executemany(
            "INSERT INTO dossiers (code, source, status, source_status, unit_code, unit_name, assignee_name,"
            " returned_at, timeliness, via_postal, first_seen, last_seen)"
            " VALUES (?, 'motcua', 'finished', 'finished', ?, ?, 'Trương Kim Mai', ?, ?, ?, ?, ?)",
            [(c, u, names[u], at, t, p, at - 86400, at) for c, u, at, t, p in returned],
        )
        await conn.executemany(
            "INSERT INTO dossier_crossings (code, unit_code, threshold, due_at, crossed_at,"
            " working_seconds_left, outage_overlap) VALUES (?, ?, 'overdue', ?, ?, 0, ?)",
            [(c, u, at, at, o) for c, u, at, o in crossings],
        )


async def write_known_series(path: Path) -> None:
    """Two daemon runs on one file, with their heartbeats: the first runs from 25 Sep and stops at 11:20
    on 14 Oct inside incident B, the second starts at 12:40, closes it and runs until 5 Nov."""
    before, after = RESTART
    moment = [local("2025-09-25", "00:00")]
    first = SqliteStore(path, flush_interval=3600)
    await first.open()
    beat = Heartbeat(first, clock=lambda: moment[0])
    await beat.start()
    portal_down = [A[:2], B[:2], E[:2], C[:2]]
    for result in _samples("portal", local("2025-09-25", "00:00"), before, portal_down):
        first.record(result)
    for result in _samples("motcua-db", DB_FIRST, before, [D[:2]]):
        first.record(result)
    await _incident(first, "portal", A)
    b_id = await first.open_incident("portal", B[0], B[2], "")
    moment[0] = before
    await beat.stop()
    await first.close()

    async with SqliteStore(path, flush_interval=3600) as second:
        moment[0] = after
        beat = Heartbeat(second, clock=lambda: moment[0])
        await beat.start()
        assert [i.id for i in await second.open_incidents()] == [b_id], "B stays open across the restart"
        for result in _samples("portal", after, local("2025-11-05", "00:00"), portal_down):
            second.record(result)
        for result in _samples("motcua-db", after, DB_LAST, [D[:2]]):
            second.record(result)
        await second.close_incident(b_id, B[1])
        await _incident(second, "portal", E)
        await _incident(second, "portal", C)
        await _incident(second, "motcua-db", D)
        await _dossiers(second)
        moment[0] = local("2025-11-05", "00:00")
        await beat.stop()


@pytest.fixture(scope="module")
def known_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sla") / "monitor.db"
    asyncio.run(write_known_series(path))
    return path


def config_text(store: Path, port: int = 9) -> str:
    """The office's config: the store, the two targets, portal's planned maintenance window."""
    common = f"type: tcp, host: 127.0.0.1, port: {port}, interval: 1h, timeout: 1s"
    return (
        f"listen: 127.0.0.1:0\nstore: {{path: {store}}}\nscheduler: {{start_jitter: 0}}\n"
        "logging: {format: json}\ntargets:\n"
        f"  - {{name: portal, {common}, maintenance: [{{start: '2025-10-20 22:00', duration: 1h}}]}}\n"
        f"  - {{name: motcua-db, {common}}}\n"
    )


@pytest.fixture(scope="module")
def config_file(known_store: Path) -> Path:
    path = known_store.parent / "config.yaml"
    path.write_text(config_text(known_store), encoding="utf-8")
    return path


async def _report(path: Path, month: Month = MONTH, *, with_config: bool = True):
    configured = load_config_text(config_text(path), environ={}).targets if with_config else []
    async with SqliteStore(path, readonly=True) as store:
        return await build_report(
            store,
            month,
            zone=ZONE,
            calendar=Calendars(zone=ZONE).default,
            now=datetime.now(UTC),
            configured=configured,
        )


async def test_uptime_and_incidents_count_only_what_falls_inside_the_month(known_store: Path) -> None:
    """Exact figures: boundary incidents clipped to October, the monitor's stop left out, maintenance free."""
    report = await _report(known_store)
    planned = {"portal": [Span(*MAINTENANCE)]}
    assert (report.start, report.end) == (local("2025-10-01", "00:00"), local("2025-11-01", "00:00"))
    db, portal = report.targets
    assert (db.name, portal.name) == ("motcua-db", "portal")
    assert portal.monitored_seconds == PORTAL_MONITORED
    assert portal.downtime_seconds == PORTAL_DOWN
    assert portal.uptime_ratio == pytest.approx(1 - PORTAL_DOWN / PORTAL_MONITORED)
    assert [(i.started_at, i.counted_seconds, i.cause) for i in portal.incidents] == [
        (A[0], 2 * 3600, "timeout"),
        (B[0], B_COUNTED, "refused"),
        (E[0], 1800, "timeout"),
        (C[0], 3600, "status"),
    ]
    # The store's own uptime reads the same spans: same downtime, the maintenance failures only counted
    # as maintenance (22:00-23:00 every 2 minutes).
    async with SqliteStore(known_store, readonly=True) as store:
        stored = await store.uptime("portal", report.start, report.end, planned)
    assert (stored.downtime_seconds, stored.uptime_ratio) == (portal.downtime_seconds, portal.uptime_ratio)
    assert (stored.maintenance, stored.incidents) == (30, 4)
    # The stop is shown apart, the same in the report and the store.
    assert portal.unmonitored_seconds == stored.unmonitored_seconds == GAP
    # MTTR over incidents that ended in October, at their full length: A (4 h), B (3 h), E (1 h).
    assert portal.mttr_seconds == pytest.approx(8 * 3600 / 3)
    assert portal.downtime_working_seconds == 3000
    assert portal.downtime_off_hours_seconds == PORTAL_DOWN - 3000
    # Added on the 11th, last probed at 12:00 on the 20th: monitored until the end of that hour.
    assert db.monitored_seconds == DB_MONITORED
    assert db.downtime_seconds == 1800 and db.downtime_working_seconds == 1800
    assert db.uptime_ratio == pytest.approx(1 - 1800 / DB_MONITORED)
    assert db.mttr_seconds == 1800
    # Unmonitored is the monitor being off, not the target being unwatched: after its removal on the
    # 20th the monitor kept running, so only the stop on the 14th counts.
    assert db.unmonitored_seconds == GAP

    # Without the config the window is not known to be planned: E counts whole, October is monitored whole.
    store_only = await _report(known_store, with_config=False)
    portal = store_only.targets[1]
    assert (portal.monitored_seconds, portal.downtime_seconds) == (
        OCTOBER_SECONDS - GAP,
        PORTAL_DOWN_STORE_ONLY,
    )

    # September, for the comparison: portal from the 25th, A's first 2 h.
    previous = report.previous
    assert previous is not None and previous.month == Month(2025, 9)
    assert [t.name for t in previous.targets] == ["portal"]
    september = (local("2025-10-01", "00:00") - local("2025-09-25", "00:00")).total_seconds()
    assert previous.targets[0].monitored_seconds == september
    assert previous.targets[0].downtime_seconds == 2 * 3600
    assert previous.targets[0].mttr_seconds is None


async def test_units_count_returns_overdue_and_postal_share_of_the_month(known_store: Path) -> None:
    """Per unit: early/on time/late returned in October only, overdue crossings, those during outages."""
    report = await _report(known_store)
    _assert_october_units(report.units, report.previous.units)  # type: ignore[union-attr]


async def test_unit_figures_are_the_same_on_both_engines(stores: StoreFactory, tmp_path: Path) -> None:
    """The report's per-unit figures come from SQL both engines run: the same dossiers, the same units."""
    async with stores.new(tmp_path / "monitor.db", flush_interval=3600) as store:
        await _dossiers(store)
        dossiers = DossierStore(store)
        october = await unit_figures(dossiers, MONTH.span(ZONE))
        september = await unit_figures(dossiers, MONTH.previous.span(ZONE))
    _assert_october_units(october, september)


def _assert_october_units(units: Sequence[UnitSla], september: Sequence[UnitSla]) -> None:
    tnmt, lka = units
    assert (tnmt.name, tnmt.early, tnmt.on_time, tnmt.late, tnmt.returned) == (
        "Phòng Tài nguyên và Môi trường",
        3,
        2,
        1,
        6,
    )
    assert tnmt.on_time_ratio == pytest.approx(5 / 6)
    assert tnmt.postal_ratio == pytest.approx(2 / 6)
    assert (tnmt.overdue, tnmt.overdue_during_outage) == (2, 1)
    assert (lka.returned, lka.late, lka.on_time_ratio, lka.overdue, lka.overdue_during_outage) == (
        1,
        1,
        0.0,
        1,
        1,
    )
    assert [(u.code, u.on_time, u.overdue) for u in september] == [("000.20.12.H12", 1, 1)]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


def test_cli_writes_every_format_and_agrees_with_uptime(
    known_store: Path, config_file: Path, tmp_path: Path
) -> None:
    """`report` in md, csv and html; its uptime equals `tthc-monitor uptime --month` to the digit."""
    done = _cli("report", "--month", "2025-10", "--config", str(config_file), "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    targets = {row["name"]: row for row in rows if row["section"] == "target"}
    assert float(targets["portal"]["downtime_seconds"]) == PORTAL_DOWN
    assert float(targets["portal"]["unmonitored_seconds"]) == GAP
    assert float(targets["portal"]["uptime_percent"]) == pytest.approx(
        100 * (1 - PORTAL_DOWN / PORTAL_MONITORED), abs=1e-4
    )
    assert [row["incident_id"] for row in rows if row["section"] == "incident" and row["name"] == "portal"]
    units = {row["unit_code"]: row for row in rows if row["section"] == "unit"}
    assert units["000.20.12.H12"]["overdue_during_outage"] == "1"

    for source in (["--config", str(config_file)], ["--store", str(known_store)]):
        uptime = _cli("uptime", "--month", "2025-10", *source)
        assert uptime.returncode == 0, uptime.stderr
        printed = {line.split()[0]: line.split() for line in uptime.stdout.splitlines()[2:]}
        report = _cli("report", "--month", "2025-10", *source, "--format", "csv")
        rows = list(csv.DictReader(io.StringIO(report.stdout)))
        for row in (row for row in rows if row["section"] == "target"):
            name = row["name"]
            assert printed[name][1] == f"{float(row['uptime_percent']):.3f}", (name, printed[name], row)
            assert printed[name][2] == row["incidents"]
            # The UNMONITORED column: the monitor's stop on the 14th, for both targets.
            assert format_duration(float(row["unmonitored_seconds"])) == "1h 20m", row
            assert " 1h 20m " in " ".join(printed[name]), printed[name]

    markdown = _cli("report", "--month", "2025-10", "--config", str(config_file))
    assert markdown.returncode == 0, markdown.stderr
    text = markdown.stdout
    for expected in (
        "# Báo cáo chất lượng dịch vụ (SLA) tháng 10/2025",
        "| portal | 30 ngày 21 giờ | 1 giờ 20 phút | 99,303% | 5 giờ 10 phút | 50 phút | 4 giờ 20 phút | 4"
        " | 2 giờ 40 phút |",
        "| portal | #",
        "| 2 giờ | Quá thời gian phản hồi |",
        "| Phòng Tài nguyên và Môi trường | 6 | 3 | 2 | 1 | 83,3% | 2 | 1 | 33,3% |",
        "## So sánh với tháng 09/2025: hệ thống",
    ):
        assert expected in text, expected
    # Nothing internal or personal: probe details and officer names stay out.
    assert "10.0.3.7" not in text and "Trương Kim Mai" not in text

    out = tmp_path / "report.html"
    done = _cli(
        "report", "--month", "2025-10", "--store", str(known_store), "--format", "html", "--out", str(out)
    )
    assert done.returncode == 0 and f"wrote the 2025-10 report to {out}" in done.stderr
    assert "<thead>" in out.read_text(encoding="utf-8")


def test_cli_names_bad_input_precisely(known_store: Path, tmp_path: Path) -> None:
    """A malformed or future month, a missing store: one line naming the problem, no traceback."""
    for args, message in (
        (
            ["--month", "2025-13", "--store", str(known_store)],
            "--month: '2025-13' is not a month like 2026-10",
        ),
        (["--month", "2999-01", "--store", str(known_store)], "--month: 2999-01 has not started yet"),
        (["--month", "2025-10", "--store", str(tmp_path / "none.db")], "no store at"),
    ):
        done = _cli("report", *args)
        assert done.returncode != 0
        assert message in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(ValueError, match="not a month"):
        parse_month("10/2025")


async def test_api_uptime_agrees_with_the_report(known_store: Path, tmp_path: Path) -> None:
    """A daemon on the same store answers /api/v1/targets/{name}/uptime for October as the report does."""
    copy = shutil.copyfile(known_store, tmp_path / "monitor.db")
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = load_config_text(config_text(copy, port), environ={})
    report = await _report(known_store)
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as session:
            for target in report.targets:
                params = {"from": report.start.isoformat(), "to": report.end.isoformat()}
                url = f"{daemon.base_url}/api/v1/targets/{target.name}/uptime"
                async with session.get(url, params=params) as response:
                    body = await response.json()
                assert body["downtime_seconds"] == round(target.downtime_seconds, 3)
                assert body["uptime_percent"] == round(target.uptime_ratio * 100, 4)  # type: ignore[operator]
                assert body["incidents"] == len(target.incidents)
                assert body["unmonitored_seconds"] == round(target.unmonitored_seconds, 3) == GAP
    finally:
        await daemon.stop()
        server.close()
        await server.wait_closed()


async def _big_store(path: Path) -> None:
    """40 targets with 6 incidents each in October: tables long enough to run over several A4 pages."""
    async with SqliteStore(path, flush_interval=3600) as store:
        for index in range(40):
            name = f"he-thong-mot-cua-{index:02d}"
            at = local("2025-10-01", "00:00")
            while at < local("2025-11-01", "00:00"):
                store.record(ProbeResult(name, at.astimezone(UTC), 0.05, OK, Health.UP))
                at += timedelta(hours=1)
            for day in range(6):
                start = local(f"2025-10-{3 + day * 4:02d}", "08:00") + timedelta(minutes=index)
                await _incident(store, name, (start, start + timedelta(minutes=5 + index), "timeout"))


def _read_pdf(pdf: Path) -> tuple[str, list[str]]:
    """pdfinfo's report and the text of each page, laid out as printed."""
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
    return info, [
        subprocess.run(
            ["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for page in range(1, pages + 1)
    ]


async def test_html_report_prints_on_a4_without_cutting_a_row(tmp_path: Path) -> None:
    """Printed by Chromium: A4 pages, every incident row whole on one page, headers repeated per page."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    if not all(_which(tool) for tool in ("pdfinfo", "pdftotext")):
        pytest.skip("poppler-utils (pdfinfo, pdftotext) is not installed (CI installs it)")
    store_path = tmp_path / "big.db"
    await _big_store(store_path)
    report = await _report(store_path)
    html = tmp_path / "report.html"
    html.write_text(render(report, "html"), encoding="utf-8")
    async with open_browser(executable) as browser:
        page = await browser.new_page()
        await page.goto(html.as_uri(), width=1000, height=1400, mobile=False, headers={})
        pdf = await page.print_pdf(ARTIFACTS / "sla-report-a4.pdf")
        assert page.requests == [html.as_uri()], "the report loads nothing"
    info, texts = _read_pdf(pdf)
    pages = len(texts)
    assert "(A4)" in info, info
    assert 4 <= pages <= 12, f"{pages} pages"
    incidents = [(t.name, line) for t in report.targets for line in t.incidents]
    assert len(incidents) == 240
    for name, line in incidents:
        # The id and the incident's cause on one text line of exactly one page: the row was not cut.
        pattern = re.compile(rf"{re.escape(name)}\s+#{line.id}\s.*Quá thời gian phản hồi")
        holders = [number for number, text in enumerate(texts, 1) if pattern.search(text)]
        assert len(holders) == 1, (name, line.id, holders)
    for number, text in enumerate(texts, 1):
        if re.search(r"#\d+\s", text):
            # Headers found only in the incident table's header row.
            assert re.search(r"Mã\s+Bắt đầu\s+Kết thúc", text), f"page {number}: incident rows, no header"
    print(f"SLA report PDF ({pages} A4 pages): {pdf}")


def _which(tool: str) -> bool:
    return shutil.which(tool) is not None
