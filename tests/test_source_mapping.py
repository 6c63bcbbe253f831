"""Record mapping of dossier sources: paths, dates, statuses, booleans, validation, duplicates, configs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from structlog.testing import capture_logs

from monitor.dossiers.model import DossierStatus
from probes.sources import SOURCE_TYPES, SourceConfig
from probes.sources.dvcqg import DEFAULT_DVCQG_STATUS_MAP, map_dvcqg_record
from probes.sources.mapping import (
    BatchBuilder,
    DateParser,
    FieldMapper,
    Rejected,
    get_path,
    parse_bool,
    split_path,
)
from probes.sources.opencps import map_opencps_item

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
APPLICANT = "Nguyễn Thị Bí Mật"
PHONE = "0912345678"

ALL_FIELDS = {
    "code": "ma",
    "status": "tt",
    "unit_code": "dv.ma",
    "unit_name": "dv.ten",
    "procedure_code": "thuTuc.ma",
    "procedure_name": "thuTuc.ten",
    "assignee_id": "canBo.id",
    "assignee_name": "canBo.ten",
    "received_at": "ngayNhan",
    "due_at": "ngayHen",
    "extended_due_at": "ngayGiaHan",
    "released_at": "ngayTra",
    "finished_at": "ngayXong",
    "modified_at": "capNhat",
    "via_postal": "buuChinh",
    "online": "tructuyen",
    "duration_days": "soNgay",
    "duration_hours": "soGio",
}
STATUS_MAP = {
    "1": DossierStatus.OPEN,
    "5": DossierStatus.PAUSED,
    "9": DossierStatus.FINISHED,
    "huy": DossierStatus.CANCELLED,
}


def mapper(**overrides: object) -> FieldMapper:
    options: dict[str, object] = {
        "fields": ALL_FIELDS,
        "dates": DateParser(["%d/%m/%Y %H:%M:%S", "epoch_ms"], HCM),
        "status_map": STATUS_MAP,
    }
    options.update(overrides)
    return FieldMapper("vendor", **options)  # type: ignore[arg-type]


def record(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ma": "000.00.12.H12-260301-0001",
        "tt": "1",
        "dv": {"ma": "H12.01", "ten": "UBND xã A"},
        "thuTuc": {"ma": "1.001234", "ten": "Đăng ký khai sinh"},
        "canBo": {"id": 42, "ten": "Trần Văn Cán Bộ"},
        "ngayNhan": "02/03/2026 08:15:00",
        "ngayHen": "05/03/2026 16:30:00",
        "ngayGiaHan": "",
        "ngayTra": None,
        "ngayXong": "",
        "capNhat": 1772437500000,
        "buuChinh": "1",
        "tructuyen": "false",
        "soNgay": "3",
        "hoTen": APPLICANT,
        "soDienThoai": PHONE,
    }
    base.update(overrides)
    return base


# --- paths, booleans ---------------------------------------------------------------------------------


def test_split_and_get_path_walk_objects_and_lists() -> None:
    """Dotted paths address nested objects, list positions and numeric object keys."""
    document = {"data": {"items": [{"code": "A"}, {"code": "B"}], "0": "zero"}}
    assert split_path("data.items.1.code") == ("data", "items", 1, "code")
    assert split_path("") == ()
    assert get_path(document, split_path("data.items.1.code")) == "B"
    assert get_path(document, split_path("data.0")) == "zero"
    assert get_path(document, split_path("data.items.5.code")) is None
    assert get_path(document, split_path("data.items.code"), "dflt") == "dflt"
    assert get_path(document, ()) is document


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        (1, True),
        (True, True),
        ("yes", True),
        ("false", False),
        ("0", False),
        (0, False),
        (False, False),
        (None, False),
        ("", False),
        (2, False),
        ("abc", False),
    ],
)
def test_parse_bool_truthy_mapping(value: object, expected: bool) -> None:
    """ "true", "1", 1 and true are true; everything else is false."""
    assert parse_bool(value) is expected


# --- dates -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("%d/%m/%Y %H:%M:%S", "05/03/2026 16:30:00", datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("%d/%m/%Y %H:%M:%S", "5/3/2026 8:05:00", datetime(2026, 3, 5, 8, 5, tzinfo=HCM)),
        ("%d/%m/%Y %H:%M", "05/03/2026 16:30", datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("%d/%m/%Y", "05/03/2026", datetime(2026, 3, 5, tzinfo=HCM)),
        ("%Y%m%d%H%M%S", "20260305163000", datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("%Y%m%d", "20260305", datetime(2026, 3, 5, tzinfo=HCM)),
        ("%Y-%m-%d %H:%M:%S", "2026-03-05 16:30:00", datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("%Y-%m-%dT%H:%M:%S", "2026-03-05T16:30:00", datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("%Y-%m-%d", "2026-03-05", datetime(2026, 3, 5, tzinfo=HCM)),
        ("%d-%m-%Y %Hh%M", "05-03-2026 16h30", datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("%Y-%m-%dT%H:%M:%S%z", "2026-03-05T09:30:00+0000", datetime(2026, 3, 5, 9, 30, tzinfo=UTC)),
        ("iso", "2026-03-05T16:30:00", datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("iso", "2026-03-05T09:30:00Z", datetime(2026, 3, 5, 9, 30, tzinfo=UTC)),
        ("epoch_s", 1772703000, datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("epoch_s", "1772703000", datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("epoch_ms", 1772703000000, datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
        ("epoch_ms", "1772703000000", datetime(2026, 3, 5, 16, 30, tzinfo=HCM)),
    ],
)
def test_date_formats(pattern: str, value: object, expected: datetime) -> None:
    """Each supported format parses to the right instant, naive values in the source's zone."""
    parsed = DateParser([pattern], HCM).parse(value)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is not None


def test_date_formats_tried_in_order_and_timezone_applies() -> None:
    """Formats are tried in order; the configured zone decides what a naive local time means."""
    parser = DateParser(["%d/%m/%Y %H:%M:%S", "epoch_ms", "%Y%m%d"], "UTC")
    assert parser.parse("05/03/2026 16:30:00") == datetime(2026, 3, 5, 16, 30, tzinfo=UTC)
    assert parser.parse(1772703000000) == datetime(2026, 3, 5, 9, 30, tzinfo=UTC)
    assert parser.parse("20260305") == datetime(2026, 3, 5, tzinfo=UTC)
    local = DateParser(["%d/%m/%Y %H:%M:%S"], HCM).parse("05/03/2026 16:30:00")
    assert local is not None and local.astimezone(UTC) == datetime(2026, 3, 5, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("empty", [None, "", "   ", 0, "0"])
def test_empty_dates_are_none(empty: object) -> None:
    """An empty string (OpenCPS) or a zero epoch means no date, not an error."""
    assert DateParser(["%d/%m/%Y %H:%M:%S", "epoch_ms"], HCM).parse(empty) is None


@pytest.mark.parametrize(
    "bad", ["31/02/2026 10:00:00", "05/03/2026", "tomorrow", "٠٥/٠٣/٢٠٢٦ ١٦:٣٠:٠٠", True]
)
def test_bad_dates_raise_naming_the_formats(bad: object) -> None:
    """Impossible dates, other layouts and non-ASCII digits fail with the value and the formats tried."""
    parser = DateParser(["%d/%m/%Y %H:%M:%S"], HCM)
    with pytest.raises(ValueError, match=r"cannot parse .* with formats \['%d/%m/%Y %H:%M:%S'\]"):
        parser.parse(bad)


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 12, 31)))
def test_fast_path_agrees_with_strptime(moment: datetime) -> None:
    """The slicing fast path gives exactly what strptime gives for every fixed layout."""
    moment = moment.replace(microsecond=0)
    for pattern in ("%d/%m/%Y %H:%M:%S", "%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y"):
        rendered = moment.strftime(pattern)
        expected = datetime.strptime(rendered, pattern).replace(tzinfo=HCM)
        assert DateParser([pattern], HCM).parse(rendered) == expected


# --- the generic mapper ------------------------------------------------------------------------------


def test_field_mapper_maps_every_field() -> None:
    """Every Dossier field is read from its dotted path and converted."""
    dossier = mapper()(record(ngayGiaHan="09/03/2026 16:30:00", soGio="4"))
    assert dossier.code == "000.00.12.H12-260301-0001"
    assert dossier.source == "vendor"
    assert (dossier.unit_code, dossier.unit_name) == ("H12.01", "UBND xã A")
    assert (dossier.procedure_code, dossier.procedure_name) == ("1.001234", "Đăng ký khai sinh")
    assert (dossier.assignee_id, dossier.assignee_name) == ("42", "Trần Văn Cán Bộ")
    assert dossier.received_at == datetime(2026, 3, 2, 8, 15, tzinfo=HCM)
    assert dossier.due_at == datetime(2026, 3, 5, 16, 30, tzinfo=HCM)
    assert dossier.extended_due_at == datetime(2026, 3, 9, 16, 30, tzinfo=HCM)
    assert dossier.released_at is None and dossier.finished_at is None
    assert dossier.modified_at == datetime.fromtimestamp(1772437500, tz=HCM)
    assert dossier.via_postal is True and dossier.online is False
    assert dossier.duration_days == 3.0 and dossier.duration_hours == 4.0
    assert dossier.status is DossierStatus.OPEN and dossier.raw_status == "1"
    assert APPLICANT not in repr(dossier) and PHONE not in repr(dossier)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", DossierStatus.OPEN),
        ("5", DossierStatus.PAUSED),
        ("9", DossierStatus.FINISHED),
        ("HUY", DossierStatus.CANCELLED),
    ],
)
def test_status_map(raw: str, expected: DossierStatus) -> None:
    """Raw statuses map through status_map, case-insensitively as a fallback."""
    assert mapper()(record(tt=raw, ngayXong="06/03/2026 10:00:00")).status is expected


def test_unknown_status_rejected_or_defaulted() -> None:
    """An unmapped raw status rejects the record unless a default status is configured."""
    with pytest.raises(Rejected) as caught:
        mapper()(record(tt="77"))
    assert caught.value.reason == "unknown_status"
    assert mapper(default_status=DossierStatus.OPEN)(record(tt="77")).status is DossierStatus.OPEN


def test_status_derived_from_dates_without_status_field() -> None:
    """Without a status field, a released or finished date means finished, else open."""
    fields = {key: value for key, value in ALL_FIELDS.items() if key != "status"}
    derive = mapper(fields=fields)
    assert derive(record()).status is DossierStatus.OPEN
    assert derive(record(ngayTra="06/03/2026 10:00:00")).status is DossierStatus.FINISHED


def test_online_missing_is_unknown() -> None:
    """A missing `online` field is None (unknown), not False."""
    data = record()
    del data["tructuyen"]
    assert mapper()(data).online is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"ma": ""}, "no_code"),
        ({"ma": None}, "no_code"),
        ({"ngayHen": "", "soNgay": ""}, "no_due_date"),
        ({"ngayHen": "", "ngayNhan": ""}, "no_due_date"),
        ({"ngayHen": "31/02/2026 10:00:00"}, "bad_date"),
        ({"ngayNhan": "hôm qua"}, "bad_date"),
        ({"ngayHen": "01/03/2026 08:00:00"}, "due_before_received"),
        ({"tt": "42"}, "unknown_status"),
    ],
)
def test_validation_reasons(overrides: dict[str, object], reason: str) -> None:
    """Each kind of unusable record is rejected with its reason."""
    with pytest.raises(Rejected) as caught:
        mapper()(record(**overrides))
    assert caught.value.reason == reason


def test_due_date_may_be_computed_from_received_and_duration() -> None:
    """No due date is fine when a received date and a duration let the engine compute one."""
    dossier = mapper()(record(ngayHen=""))
    assert dossier.due_at is None and dossier.duration_days == 3.0


def test_batch_counts_rejections_duplicates_and_logs_where() -> None:
    """Rejections are counted by reason and logged with their position and code; the last duplicate wins."""
    build = mapper()
    builder = BatchBuilder("vendor", build, build.code_of)
    records = [record(ma=f"C-{index:04d}") for index in range(16)]
    records.append(record(ma="000.00.12.H12-261128-0001", ngayHen="31/02/2026 10:00:00"))
    records.append(record(ma="", hoTen=APPLICANT))
    records.append(record(ma="C-0003", canBo={"id": 7, "ten": "Người sau"}))
    records.append(record(ma="C-0004"))
    with capture_logs() as logs:
        builder.add_all(records)
        batch = builder.build(full=True, total_reported=len(records))
    assert len(batch.dossiers) == 16
    assert batch.rejected == {"bad_date": 1, "no_code": 1}
    assert batch.duplicates == 2
    assert batch.total_reported == 20
    winner = next(d for d in batch.dossiers if d.code == "C-0003")
    assert winner.assignee_name == "Người sau"
    details = [entry["detail"] for entry in logs if entry["event"] == "dossier_rejected"]
    assert details[0].startswith(
        "record 17 (000.00.12.H12-261128-0001): due_at: cannot parse '31/02/2026 10:00:00'"
    )
    assert "with formats ['%d/%m/%Y %H:%M:%S', 'epoch_ms']" in details[0]
    assert details[1].startswith("record 18: code: missing")
    assert all(APPLICANT not in str(entry) and PHONE not in str(entry) for entry in logs)


def test_field_mapper_keeps_dotted_csv_headers_whole() -> None:
    """With dotted=False a header containing dots is a single column name."""
    build = FieldMapper(
        "csv",
        {"code": "Số hồ sơ", "due_at": "Ngày hẹn trả (dd.mm.yyyy)"},
        DateParser(["%d.%m.%Y"], HCM),
        {},
        dotted=False,
    )
    dossier = build({"Số hồ sơ": "X-1", "Ngày hẹn trả (dd.mm.yyyy)": "05.03.2026"})
    assert dossier.due_at == datetime(2026, 3, 5, tzinfo=HCM)


# --- OpenCPS items -----------------------------------------------------------------------------------

OPENCPS_DATES = DateParser(["%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "epoch_ms"], HCM)


def opencps_item(**overrides: object) -> dict[str, object]:
    item: dict[str, object] = {
        "dossierId": 101,
        "dossierNo": "000.00.12.H12-260302-0007",
        "referenceUid": "ab12",
        "serviceCode": "1.004227",
        "serviceName": "Cấp giấy phép xây dựng",
        "govAgencyCode": "H12.01",
        "govAgencyName": "UBND xã Long Khánh",
        "receiveDate": "02/03/2026 09:00:00",
        "dueDate": "16/03/2026 17:00:00",
        "extendDate": "",
        "releaseDate": "",
        "finishDate": "",
        "dossierStatus": "processing",
        "dossierStatusText": "Đang xử lý",
        "lockState": "",
        "online": "true",
        "viaPostal": 0,
        "durationCount": 10.0,
        "durationUnit": 0,
        "dueDateComing": "1773475200000",
        "currentActionUser": "Lê Văn Xử Lý",
        "lastActionUserId": 3301,
        "applicantName": APPLICANT,
        "contactTelNo": PHONE,
        "contactEmail": "bimat@example.vn",
        "address": "Số 1 đường A",
    }
    item.update(overrides)
    return item


def test_opencps_item_fields() -> None:
    """An OpenCPS item maps every monitored field and drops applicant data."""
    dossier = map_opencps_item(
        opencps_item(extendDate="20/03/2026 17:00:00", viaPostal=2), "opencps", OPENCPS_DATES
    )
    assert dossier.code == "000.00.12.H12-260302-0007"
    assert (dossier.unit_code, dossier.unit_name) == ("H12.01", "UBND xã Long Khánh")
    assert (dossier.procedure_code, dossier.procedure_name) == ("1.004227", "Cấp giấy phép xây dựng")
    assert (dossier.assignee_id, dossier.assignee_name) == ("3301", "Lê Văn Xử Lý")
    assert dossier.received_at == datetime(2026, 3, 2, 9, 0, tzinfo=HCM)
    assert dossier.due_at == datetime(2026, 3, 16, 17, 0, tzinfo=HCM)
    assert dossier.extended_due_at == datetime(2026, 3, 20, 17, 0, tzinfo=HCM)
    assert dossier.effective_due_at == dossier.extended_due_at
    assert dossier.duration_days == 10.0 and dossier.duration_hours is None
    assert dossier.via_postal is True and dossier.online is True
    assert dossier.status is DossierStatus.OPEN and dossier.raw_status == "processing"
    for secret in (APPLICANT, PHONE, "bimat@example.vn", "Số 1 đường A"):
        assert secret not in repr(dossier)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"dossierStatus": "processing"}, DossierStatus.OPEN),
        ({"dossierStatus": "new"}, DossierStatus.OPEN),
        ({"dossierStatus": "waiting"}, DossierStatus.PAUSED),
        ({"dossierStatus": "pausing"}, DossierStatus.PAUSED),
        ({"dossierStatus": "processing", "lockState": "PAUSE"}, DossierStatus.PAUSED),
        ({"dossierStatus": "processing", "lockState": "PAUSE_OVERDUE"}, DossierStatus.PAUSED),
        ({"dossierStatus": "releasing", "releaseDate": "10/03/2026 10:00:00"}, DossierStatus.FINISHED),
        ({"dossierStatus": "unresolved", "releaseDate": "10/03/2026 10:00:00"}, DossierStatus.FINISHED),
        ({"dossierStatus": "done", "finishDate": "10/03/2026 10:00:00"}, DossierStatus.FINISHED),
        ({"dossierStatus": "processing", "releaseDate": "10/03/2026 10:00:00"}, DossierStatus.FINISHED),
        ({"dossierStatus": "denied"}, DossierStatus.CANCELLED),
        ({"dossierStatus": "cancelled", "releaseDate": "10/03/2026 10:00:00"}, DossierStatus.CANCELLED),
    ],
)
def test_opencps_status(overrides: dict[str, object], expected: DossierStatus) -> None:
    """OpenCPS status, lockState and release/finish dates give the normalized status."""
    assert map_opencps_item(opencps_item(**overrides), "opencps", OPENCPS_DATES).status is expected


def test_opencps_hour_durations_and_missing_due_date() -> None:
    """durationUnit 1 means hours; without dueDate the duration lets the engine compute one."""
    dossier = map_opencps_item(
        opencps_item(dueDate="", durationCount=4, durationUnit=1, online="false"), "opencps", OPENCPS_DATES
    )
    assert dossier.due_at is None and dossier.duration_hours == 4.0 and dossier.duration_days is None
    assert dossier.online is False
    with pytest.raises(Rejected) as caught:
        map_opencps_item(opencps_item(dueDate="", durationCount=0), "opencps", OPENCPS_DATES)
    assert caught.value.reason == "no_due_date"


def test_not_received_online_submissions_are_set_aside() -> None:
    """A `new` online submission with no receipt yet is not_received, not an invalid record."""
    item = opencps_item(dossierStatus="new", receiveDate="", dueDate="", dossierNo="")
    with pytest.raises(Rejected) as caught:
        map_opencps_item(item, "o", OPENCPS_DATES)
    assert caught.value.reason == "not_received"
    national = dvcqg_record(TrangThaiHoSo="1", NgayTiepNhan="", NgayHenTra="")
    with pytest.raises(Rejected) as caught:
        map_dvcqg_record(national, "d", DVCQG_DATES, DEFAULT_DVCQG_STATUS_MAP)
    assert caught.value.reason == "not_received"


def test_opencps_status_overrides() -> None:
    """A province's own status can be mapped explicitly."""
    item = opencps_item(dossierStatus="archived_local")
    assert map_opencps_item(item, "o", OPENCPS_DATES).status is DossierStatus.OPEN
    overridden = map_opencps_item(item, "o", OPENCPS_DATES, {"archived_local": DossierStatus.FINISHED})
    assert overridden.status is DossierStatus.FINISHED


def test_opencps_mapping_is_fast() -> None:
    """20,000 items map well under a second's budget per 10,000 (the benchmark syncs 100,000)."""
    items = [opencps_item(dossierNo=f"000.00.12.H12-260302-{index:05d}") for index in range(20_000)]
    builder = BatchBuilder("o", lambda item: map_opencps_item(item, "o", OPENCPS_DATES), lambda item: "")
    started = time.perf_counter()
    builder.add_all(items)
    batch = builder.build(full=True, total_reported=None)
    assert len(batch.dossiers) == 20_000
    assert time.perf_counter() - started < 2.0


# --- national sync format ----------------------------------------------------------------------------

DVCQG_DATES = DateParser(["%Y%m%d%H%M%S", "%Y%m%d"], HCM)


def dvcqg_record(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "MaHoSo": "000.00.12.H12-260302-0009",
        "MaTTHC": "1.001234",
        "TenTTHC": "Đăng ký khai sinh",
        "MaLinhVuc": "HT",
        "ChuHoSo": APPLICANT,
        "LoaiDoiTuong": "1",
        "SoDienThoai": PHONE,
        "Email": "bimat@example.vn",
        "NgayTiepNhan": "20260302090000",
        "NgayHenTra": "20260305170000",
        "TrangThaiHoSo": "4",
        "NgayTra": "",
        "HinhThuc": "1",
        "NgayKetThucXuLy": "",
        "DonViXuLy": "UBND xã A",
        "MaDonViXuLy": "H12.01",
        "KenhThucHien": "2",
        "DanhSachHoSoBoSung": [
            {"NgayHenTraTruoc": "20260305170000", "NgayHenTraMoi": "20260310170000"},
            {"NgayHenTraTruoc": "20260310170000", "NgayHenTraMoi": "20260312170000"},
        ],
    }
    data.update(overrides)
    return data


def test_dvcqg_record_fields() -> None:
    """A national-format record maps every field; the latest NgayHenTraMoi extends the due date."""
    dossier = map_dvcqg_record(dvcqg_record(), "dvc", DVCQG_DATES, DEFAULT_DVCQG_STATUS_MAP)
    assert dossier.code == "000.00.12.H12-260302-0009"
    assert (dossier.procedure_code, dossier.procedure_name) == ("1.001234", "Đăng ký khai sinh")
    assert (dossier.unit_code, dossier.unit_name) == ("H12.01", "UBND xã A")
    assert dossier.online is True
    assert dossier.received_at == datetime(2026, 3, 2, 9, tzinfo=HCM)
    assert dossier.due_at == datetime(2026, 3, 5, 17, tzinfo=HCM)
    assert dossier.extended_due_at == datetime(2026, 3, 12, 17, tzinfo=HCM)
    assert dossier.via_postal is True and dossier.status is DossierStatus.OPEN
    for secret in (APPLICANT, PHONE, "bimat@example.vn"):
        assert secret not in repr(dossier)
    done = map_dvcqg_record(
        dvcqg_record(
            TrangThaiHoSo=10, NgayTra="20260304100000", NgayKetThucXuLy="20260303160000", HinhThuc=0
        ),
        "dvc",
        DVCQG_DATES,
        DEFAULT_DVCQG_STATUS_MAP,
    )
    assert done.status is DossierStatus.FINISHED and done.via_postal is False
    extended = map_dvcqg_record(
        dvcqg_record(NgayGiaHan="20260320170000", DanhSachGiaHanXuLy=[{"NgayHenTraMoi": "20260318170000"}]),
        "dvc",
        DVCQG_DATES,
        DEFAULT_DVCQG_STATUS_MAP,
    )
    assert extended.extended_due_at == datetime(2026, 3, 20, 17, tzinfo=HCM)
    assert done.finished_at == datetime(2026, 3, 4, 10, tzinfo=HCM)
    assert done.released_at == datetime(2026, 3, 3, 16, tzinfo=HCM)


def test_dvcqg_status_defaults_and_override() -> None:
    """Default codes 1-10 map as documented; a configured map overrides one code."""
    expected = {"1": "open", "3": "cancelled", "5": "paused", "7": "open", "8": "cancelled", "9": "finished"}
    for code, status in expected.items():
        mapped = map_dvcqg_record(
            dvcqg_record(TrangThaiHoSo=code), "d", DVCQG_DATES, DEFAULT_DVCQG_STATUS_MAP
        )
        assert mapped.status == status
    custom = {**DEFAULT_DVCQG_STATUS_MAP, "6": DossierStatus.OPEN}
    assert (
        map_dvcqg_record(dvcqg_record(TrangThaiHoSo=6), "d", DVCQG_DATES, custom).status is DossierStatus.OPEN
    )
    with pytest.raises(Rejected) as caught:
        map_dvcqg_record(dvcqg_record(TrangThaiHoSo="11"), "d", DVCQG_DATES, DEFAULT_DVCQG_STATUS_MAP)
    assert caught.value.reason == "unknown_status"


def test_dvcqg_bad_supplement_date_names_the_field() -> None:
    """A bad NgayHenTraMoi is a bad_date naming the supplement round."""
    bad = dvcqg_record(DanhSachHoSoBoSung=[{"NgayHenTraMoi": "20261345170000"}])
    with pytest.raises(Rejected) as caught:
        map_dvcqg_record(bad, "d", DVCQG_DATES, DEFAULT_DVCQG_STATUS_MAP)
    assert caught.value.reason == "bad_date"
    assert "DanhSachHoSoBoSung[0].NgayHenTraMoi" in str(caught.value)


# --- config models -----------------------------------------------------------------------------------

SOURCE_ADAPTER: TypeAdapter[object] = TypeAdapter(SourceConfig)


def test_source_config_union_and_defaults(tmp_path) -> None:
    """Each type validates with its defaults; secrets come from *_file and never show in repr."""
    secret = tmp_path / "pw"
    secret.write_text("s3cr3t-pass\n", encoding="utf-8")
    config = SOURCE_ADAPTER.validate_python(
        {
            "name": "tinh",
            "type": "opencps",
            "base_url": "https://dvc.example.gov.vn/o/rest/v2/",
            "group_id": "35417",
            "username": "monitor",
            "password_file": str(secret),
        }
    )
    assert config.password.get_secret_value() == "s3cr3t-pass"  # type: ignore[attr-defined]
    assert "s3cr3t" not in repr(config)
    assert config.base_url == "https://dvc.example.gov.vn/o/rest/v2"  # type: ignore[attr-defined]
    assert config.interval == timedelta(minutes=2)  # type: ignore[attr-defined]
    assert config.full_interval == timedelta(minutes=30)  # type: ignore[attr-defined]
    assert config.timeout == timedelta(seconds=30)  # type: ignore[attr-defined]
    assert config.page_size == 500  # type: ignore[attr-defined]
    assert config.timezone == "Asia/Ho_Chi_Minh"  # type: ignore[attr-defined]
    assert set(SOURCE_TYPES) == {"opencps", "dvcqg", "json_api", "csv"}


def test_json_api_config_status_map_int_keys_and_auth_secret() -> None:
    """YAML int keys of status_map become text; bearer tokens are secret."""
    config = SOURCE_ADAPTER.validate_python(
        {
            "name": "igate",
            "type": "json_api",
            "url": "https://igate.example/api",
            "auth": {"kind": "bearer", "token": "tok-123"},
            "fields": {"code": "a", "due_at": "b", "status": "c"},
            "status_map": {1: "open", 9: "finished"},
            "pagination": {"kind": "page", "first_page": 0},
            "interval": "90s",
        }
    )
    assert config.status_map == {"1": DossierStatus.OPEN, "9": DossierStatus.FINISHED}  # type: ignore[attr-defined]
    assert "tok-123" not in repr(config)
    assert config.interval == timedelta(seconds=90)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fields": {"due_at": "b"}}, "must map code"),
        ({"fields": {"code": "a"}}, "must map due_at"),
        ({"fields": {"code": "a", "due_at": "b", "applicant": "c"}}, "unknown dossier fields"),
        ({"fields": {"code": "a", "due_at": "b"}, "status_map": {"1": "lost"}}, "status_map"),
        ({"fields": {"code": "a", "due_at": "b"}, "timezone": "Mars/Base"}, "unknown timezone"),
        ({"fields": {"code": "a", "due_at": "b"}, "surprise": 1}, "surprise"),
    ],
)
def test_json_api_config_errors(data: dict[str, object], message: str) -> None:
    """Bad configs fail with short messages naming the problem."""
    with pytest.raises(ValidationError, match=message):
        SOURCE_ADAPTER.validate_python({"name": "x", "type": "json_api", "url": "http://127.0.0.1/", **data})


def test_naive_and_aware_timezone_example() -> None:
    """A timezone-aware ISO value keeps its offset whatever the source zone."""
    parser = DateParser(["iso"], HCM)
    value = parser.parse("2026-03-05T16:30:00+07:00")
    assert value == datetime(2026, 3, 5, 9, 30, tzinfo=UTC)
