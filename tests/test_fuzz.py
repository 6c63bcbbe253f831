"""Hostile input, generated: the config loader, durations, the sources' date parsers and record mappings,
working-time arithmetic and every API query parameter either work or fail with the project's own precise
error, never an unhandled exception. Bounded examples per property (the file runs in well under 30 s);
tests are named `test_fuzz_*` so fuzz tests added elsewhere stay apart."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.calendar import WorkingCalendar
from monitor.config import Config, load_config_text
from monitor.configtypes import ConfigError
from monitor.dossiers.model import Dossier, DossierStatus
from monitor.durations import parse_duration
from probes.sources.dvcqg import _DATE_FORMATS as DVCQG_DATE_FORMATS
from probes.sources.dvcqg import DEFAULT_DVCQG_STATUS_MAP, map_dvcqg_record
from probes.sources.mapping import DOSSIER_FIELDS, DateParser, FieldMapper, Rejected, RejectReason
from probes.sources.opencps import _DATE_FORMATS as OPENCPS_DATE_FORMATS
from probes.sources.opencps import map_opencps_item
from tests.api_stack import DemoApi, demo_api

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ZONES = st.sampled_from([None, UTC, HCM, ZoneInfo("America/Los_Angeles")])
# 150 inputs per property in the suite; bench/README.md runs more with TTHC_FUZZ_EXAMPLES=1500.
EXAMPLES = int(os.environ.get("TTHC_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None)
API_EXAMPLES = max(1, EXAMPLES * 2 // 3)  # each one is an HTTP request
# Text a user or a gateway can send: any character but lone surrogates (not encodable as UTF-8).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
REASONS = {value for name, value in vars(RejectReason).items() if name.isupper()}


# --- durations ------------------------------------------------------------------------------------

DURATION_LIKE = st.from_regex(r"\A ?[0-9]{1,25}(\.[0-9]{1,4})?(ms|s|m|h|d|w|y)([0-9]{1,3}(m|s))?\Z")


@FUZZ
@given(st.one_of(TEXT, DURATION_LIKE, st.integers(), st.floats()))
def test_fuzz_durations_are_a_length_or_a_value_error(text: object) -> None:
    """Any text or number is a non-negative timedelta or a ValueError naming the input."""
    try:
        value = parse_duration(text)  # type: ignore[arg-type]
    except ValueError as exc:
        assert "invalid duration" in str(exc)
    else:
        assert value >= timedelta(0)


# --- the sources' date parsers --------------------------------------------------------------------

_LAYOUTS = ["%d/%m/%Y %H:%M:%S", "%d/%m/%Y", "%Y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%S", "%H:%M %d-%m-%Y", "iso"]
DATE_LIKE = st.one_of(
    st.from_regex(r"\A[0-9]{1,2}/[0-9]{1,2}/[0-9]{1,5}( [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?\Z"),
    st.from_regex(r"\A[0-9]{8,14}\Z"),
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2})?([+-][0-9]{2}:?[0-9]{2}|Z)?)?\Z"
    ),
    st.datetimes(timezones=ZONES).map(lambda moment: moment.isoformat()),
)
RAW_DATE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), TEXT, DATE_LIKE, st.lists(st.integers(), max_size=2)
)


@FUZZ
@given(
    st.lists(st.sampled_from([*_LAYOUTS, "epoch_s", "epoch_ms"]), min_size=1, max_size=3, unique=True),
    RAW_DATE,
)
def test_fuzz_source_dates_parse_to_an_aware_time_none_or_a_value_error(
    formats: list[str], raw: object
) -> None:
    """Any raw value is an aware datetime, None (empty) or a ValueError naming the formats."""
    parser = DateParser(formats, HCM)
    try:
        value = parser.parse(raw)
    except ValueError as exc:
        assert "with formats" in str(exc)
    else:
        assert value is None or value.tzinfo is not None


# --- working-time arithmetic ----------------------------------------------------------------------

# The range the calendar serves: dossiers of 1970 to 2200, periods up to ten years of working days.
INSTANT = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 12, 30), timezones=ZONES)
AMOUNT = st.floats(min_value=-3650, max_value=3650, allow_nan=False)
CALENDAR = WorkingCalendar()


@FUZZ
@given(INSTANT, INSTANT, AMOUNT)
def test_fuzz_working_time_never_raises_in_range(moment: datetime, other: datetime, amount: float) -> None:
    """Every calendar function answers for any instant and amount in range, always with aware times."""
    for value in (
        CALENDAR.add_working_time(moment, days=amount),
        CALENDAR.add_working_time(moment, hours=amount),
        CALENDAR.next_working_moment(moment),
        CALENDAR.start_of_half_day(moment),
        CALENDAR.due_date(moment, days=abs(amount)),
        CALENDAR.due_date(moment, hours=abs(amount)),
    ):
        assert value.tzinfo is not None
    between = CALENDAR.working_time_between(moment, other)
    assert (between >= timedelta(0)) == (CALENDAR.working_time_between(other, moment) <= timedelta(0))
    CALENDAR.classify_return(moment, other)
    CALENDAR.status(moment.date())


# --- record mappings ------------------------------------------------------------------------------

OPENCPS_KEYS = [
    "dossierNo", "dossierStatus", "dossierSubStatus", "govAgencyCode", "govAgencyName", "serviceCode",
    "serviceName", "receiveDate", "dueDate", "extendDate", "releaseDate", "finishDate", "modifiedDate",
    "durationCount", "durationUnit", "online", "viaPostal", "applicantName", "lockState", "processAssigner",
]  # fmt: skip
DVCQG_KEYS = [
    "MaHoSo", "TrangThaiHoSo", "NgayTiepNhan", "NgayHenTra", "NgayKetThucXuLy", "NgayTra", "NgayCapNhat",
    "NgayGiaHan", "DanhSachHoSoBoSung", "DanhSachGiaHanXuLy", "MaDonVi", "TenDonVi", "MaTTHC", "TenTTHC",
    "HinhThuc", "CanBoXuLy", "NgayHenTraMoi", "NgayBoSung",
]  # fmt: skip
JSON_FIELDS = {name: f"f.{name}" for name in DOSSIER_FIELDS}
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT, DATE_LIKE)
JSON_VALUE = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)


def _record(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | TEXT, JSON_VALUE, max_size=len(keys))


def _mapped_or_rejected(mapper: Any, record: object) -> None:
    try:
        dossier = mapper(record)
    except Rejected as exc:
        assert exc.reason in REASONS and str(exc)
    else:
        assert isinstance(dossier, Dossier) and dossier.code


@FUZZ
@given(st.one_of(_record(OPENCPS_KEYS), JSON_VALUE))
def test_fuzz_opencps_records_are_mapped_or_rejected(record: object) -> None:
    """An OpenCPS `/dossiers` item of any shape maps to a Dossier or is Rejected with a reason."""
    parser = DateParser(OPENCPS_DATE_FORMATS, HCM)
    _mapped_or_rejected(lambda item: map_opencps_item(item, "motcua", parser), record)


@FUZZ
@given(st.one_of(_record(DVCQG_KEYS), JSON_VALUE))
def test_fuzz_dvcqg_records_are_mapped_or_rejected(record: object) -> None:
    """A national-format record of any shape maps to a Dossier or is Rejected with a reason."""
    parser = DateParser(DVCQG_DATE_FORMATS, HCM)
    _mapped_or_rejected(
        lambda item: map_dvcqg_record(item, "dvcqg", parser, dict(DEFAULT_DVCQG_STATUS_MAP)), record
    )


STATUS_MAP = {"1": DossierStatus.OPEN, "5": DossierStatus.PAUSED, "9": DossierStatus.FINISHED}


@FUZZ
@given(
    st.one_of(
        st.fixed_dictionaries({"f": st.dictionaries(st.sampled_from(list(DOSSIER_FIELDS)), JSON_VALUE)}),
        JSON_VALUE,
    )
)
def test_fuzz_json_api_records_are_mapped_or_rejected(record: object) -> None:
    """A configured JSON API's record of any shape maps to a Dossier or is Rejected with a reason."""
    mapper = FieldMapper("igate", JSON_FIELDS, DateParser(_LAYOUTS, HCM), STATUS_MAP)
    _mapped_or_rejected(mapper, record)


@FUZZ
@given(st.dictionaries(st.sampled_from(list(DOSSIER_FIELDS)), st.one_of(TEXT, DATE_LIKE)))
def test_fuzz_csv_rows_are_mapped_or_rejected(row: dict[str, str]) -> None:
    """A CSV row (every value text, headers with dots kept whole) maps or is Rejected with a reason."""
    headers = {name: f"cot.{name}" for name in DOSSIER_FIELDS}
    mapper = FieldMapper("csv", headers, DateParser(_LAYOUTS, HCM), STATUS_MAP, dotted=False)
    _mapped_or_rejected(mapper, {headers[name]: value for name, value in row.items()})


# --- the config loader ----------------------------------------------------------------------------


def _property_names(schema: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(schema, dict):
        names.update(schema.get("properties", {}))
        for value in schema.values():
            names |= _property_names(value)
    elif isinstance(schema, list):
        for value in schema:
            names |= _property_names(value)
    return names


CONFIG_KEYS = sorted(_property_names(Config.model_json_schema()))
YAML_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT, DURATION_LIKE, DATE_LIKE
)
YAML_VALUE = st.recursive(
    YAML_SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(CONFIG_KEYS) | TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)
TOP = ["timezone", "listen", "api", "status", "store", "scheduler", "logging", "targets", "calendars"]
TOP += ["dossiers", "alerts"]
# An error names where it is: `targets[0].port: ...`, `<root>: ...`, `<yaml>: line 1, ...`.
WHERE = re.compile(r"^\S[^\n]*?: \S")


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(st.dictionaries(st.sampled_from(TOP) | TEXT, YAML_VALUE, max_size=5), YAML_VALUE, TEXT))
def test_fuzz_config_loader_answers_config_or_config_error(tmp_path: Path, document: object) -> None:
    """Any YAML document loads or raises ConfigError whose every error names where it is, one line each."""
    text = document if isinstance(document, str) else yaml.safe_dump(document, allow_unicode=True)
    try:
        load_config_text(text, base_dir=tmp_path, environ={})
    except ConfigError as exc:
        assert exc.errors
        for error in exc.errors:
            assert WHERE.match(error), error
            assert "Traceback" not in error


# --- the API's query parameters -------------------------------------------------------------------

QUERY_ROUTES = {
    "/api/v1/incidents": ("since", "target", "limit"),
    "/api/v1/targets/portal/uptime": ("from", "to"),
    "/api/v1/dossiers": ("state", "unit", "limit", "cursor"),
    "/api/v1/units": ("since",),
    "/api/v1/overdue-during-outage": ("since", "limit"),
    "/api/v1/alerts": ("since", "status", "limit"),
}
QUERY_VALUE = st.one_of(
    TEXT,
    DURATION_LIKE,
    DATE_LIKE,
    st.integers().map(str),
    # The edges: empty, out of range, other routes' values, times that overflow when converted.
    st.sampled_from(["", "0", "-1", "1001", "1e3", "nan", "pending", "overdue", "9999-12-31T23:59:59-23:59"]),
    st.sampled_from(["999999999d", "99999999999999999999y", "0001-01-01T00:00:00+07:00", "1969-12-31"]),
)


class _BackgroundDemo:
    """The demo stack on its own event loop thread, so a synchronous hypothesis test can call it."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.api: DemoApi | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-demo", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the test thread, which fails with it
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with demo_api(self._folder) as api:
            self.api = api
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> DemoApi:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None or self.api is None:
            raise RuntimeError(f"the demo did not start: {self._error!r}")
        return self.api

    def __exit__(self, *_exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@pytest.fixture(scope="module")
def background_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoApi]:
    with _BackgroundDemo(tmp_path_factory.mktemp("fuzz-demo")) as api:
        yield api


def _get(api: DemoApi, path: str, query: dict[str, str]) -> tuple[int, str, bytes]:
    url = f"{api.base_url}{path}?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url, headers=api.headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get_content_type(), error.read()


@settings(FUZZ, max_examples=API_EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(QUERY_ROUTES)), st.data())
def test_fuzz_api_query_parameters_never_5xx_always_json(
    background_demo: DemoApi, path: str, data: st.DataObject
) -> None:
    """Any value of any query parameter of any route gets 200 or a 4xx, always JSON, errors as `error`."""
    names = QUERY_ROUTES[path]
    query = data.draw(st.dictionaries(st.sampled_from(names), QUERY_VALUE, min_size=1), label="query")
    status, kind, body = _get(background_demo, path, query)
    assert status < 500, (path, query, body)
    assert kind == "application/json", (path, query, body)
    reply = json.loads(body)
    if status >= 400:
        assert set(reply) == {"error"} and reply["error"], (path, query, reply)
    if status == 400:
        named = reply["error"].split(":")[0].split(", ")
        assert set(named) <= set(names), (path, query, reply)
