"""Records in the national portal sync format ("DongBoHoSoMC", Cổng DVCQG), fetched over HTTP.

Per record: `MaHoSo`, `MaTTHC`, `TenTTHC`, `NgayTiepNhan`, `NgayHenTra`, `TrangThaiHoSo`,
`NgayKetThucXuLy` (processing ended: the result is out, OpenCPS releaseDate), `NgayTra` (returned to the
applicant, OpenCPS finishDate), `HinhThuc` (1 = postal), `DonViXuLy` (unit name) / `MaDonViXuLy` (its
code, when sent), `KenhThucHien` (2 = online), `NgayGiaHan` and `DanhSachGiaHanXuLy[]` (extensions),
`DanhSachHoSoBoSung[]` (`NgayHenTraMoi` = the new due date after a pause for missing papers),
`NgayCapNhat` (last change). Dates are `yyyyMMddHHmmss` local time. `ChuHoSo`, `SoDienThoai`, `Email`,
`DiaChi` (the applicant) are never read.

The meaning of `TrangThaiHoSo` 1-10 is seen in several front-ends but is *unconfirmed* as an official
table, so it is configurable (`status_map`); the defaults are `DEFAULT_DVCQG_STATUS_MAP`. Where a code's
meaning is disputed the default keeps the clock running: a false alert costs less than a missed deadline.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import aiohttp
from pydantic import Field, field_validator

from monitor.dossiers.model import Dossier, DossierStatus

from .dates import DateParser
from .json_api import StatusMapField, normalize_status_map
from .listing import HttpListingConfig, HttpListingSource
from .mapping import (
    parse_date_field,
    parse_status,
    shared,
    text,
    validate_dossier,
)
from .rejections import Rejected, RejectReason

__all__ = ["DEFAULT_DVCQG_STATUS_MAP", "DvcqgSource", "DvcqgSourceConfig", "map_dvcqg_record"]

# Unconfirmed (domain.md §3): 1 mới đăng ký, 2 được tiếp nhận, 3 không được tiếp nhận, 4 đang xử lý,
# 5 yêu cầu bổ sung giấy tờ, 6 chờ thực hiện nghĩa vụ tài chính, 7 chờ phê duyệt (some front-ends: the
# applicant withdrew), 8 dừng xử lý, 9 đã xử lý xong, 10 đã trả kết quả.
DEFAULT_DVCQG_STATUS_MAP: Final[dict[str, DossierStatus]] = {
    "1": DossierStatus.OPEN,
    "2": DossierStatus.OPEN,
    "3": DossierStatus.CANCELLED,
    "4": DossierStatus.OPEN,
    "5": DossierStatus.PAUSED,
    # Time waiting for the applicant to pay fees is not counted (land procedures): as missing papers.
    "6": DossierStatus.PAUSED,
    "7": DossierStatus.OPEN,
    "8": DossierStatus.CANCELLED,
    "9": DossierStatus.FINISHED,
    "10": DossierStatus.FINISHED,
}
_DATE_FORMATS: Final = ("%Y%m%d%H%M%S", "%Y%m%d", "%d/%m/%Y %H:%M:%S")


class DvcqgSourceConfig(HttpListingConfig):
    type: Literal["dvcqg"]
    modified_since_format: str = "%Y%m%d%H%M%S"
    # Merged over the defaults: a province only lists the codes it reads differently.
    status_map: StatusMapField = Field(default_factory=dict)
    default_status: DossierStatus | None = None

    _status_keys = field_validator("status_map", mode="before")(normalize_status_map)


def map_dvcqg_record(
    record: Any,
    source: str,
    dates: DateParser,
    status_map: dict[str, DossierStatus],
    default_status: DossierStatus | None = None,
) -> Dossier:
    """One national-format record to a Dossier; Rejected when it cannot be used."""
    if not isinstance(record, dict):
        raise Rejected(RejectReason.NO_CODE, "", f"record is a {type(record).__name__}, not an object")
    get = record.get
    raw_status = shared(get("TrangThaiHoSo"))
    if raw_status == "1" and not get("NgayTiepNhan") and not get("NgayHenTra"):
        # 1 = registered online, not yet received: no clock runs until the desk receives it.
        raise Rejected(RejectReason.NOT_RECEIVED, "NgayTiepNhan", "registered online, not received yet")
    code = text(get("MaHoSo"))
    if not code:
        raise Rejected(RejectReason.NO_CODE, "MaHoSo", "missing MaHoSo")
    received_at = parse_date_field(dates, "received_at", get("NgayTiepNhan"))
    due_at = parse_date_field(dates, "due_at", get("NgayHenTra"))
    released_at = parse_date_field(dates, "released_at", get("NgayKetThucXuLy"))
    finished_at = parse_date_field(dates, "finished_at", get("NgayTra"))
    modified_at = parse_date_field(dates, "modified_at", get("NgayCapNhat"))
    # The latest new appointment (extension or resume after supplement) is the one that counts.
    extended_due_at = parse_date_field(dates, "extended_due_at", get("NgayGiaHan"))
    for list_name in ("DanhSachHoSoBoSung", "DanhSachGiaHanXuLy"):
        rounds = get(list_name)
        if not isinstance(rounds, list):
            continue
        for index, entry in enumerate(rounds):
            if not isinstance(entry, dict):
                continue
            new_due = parse_date_field(
                dates, f"{list_name}[{index}].NgayHenTraMoi", entry.get("NgayHenTraMoi")
            )
            if new_due is not None and (extended_due_at is None or new_due > extended_due_at):
                extended_due_at = new_due
    status = parse_status(raw_status, status_map, default_status)
    unit_name = shared(get("DonViXuLy"))
    channel = text(get("KenhThucHien"))
    return validate_dossier(
        Dossier(
            code=code,
            source=source,
            unit_code=shared(get("MaDonViXuLy")) or unit_name,
            unit_name=unit_name,
            status=status,
            raw_status=raw_status,
            procedure_code=shared(get("MaTTHC")),
            procedure_name=shared(get("TenTTHC")),
            received_at=received_at,
            due_at=due_at,
            extended_due_at=extended_due_at,
            released_at=released_at,
            finished_at=finished_at,
            via_postal=text(get("HinhThuc")) == "1",
            online=(channel == "2") if channel else None,
            modified_at=modified_at,
        )
    )


class DvcqgSource(HttpListingSource):
    """National-format records from an HTTP endpoint, paged and authenticated like json_api."""

    config: DvcqgSourceConfig

    def __init__(self, config: DvcqgSourceConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(config, session=session)
        self._dates = DateParser(_DATE_FORMATS, config.zone)
        self._status_map = {**DEFAULT_DVCQG_STATUS_MAP, **config.status_map}

    def map_record(self, record: Any) -> Dossier:
        return map_dvcqg_record(record, self.name, self._dates, self._status_map, self.config.default_status)

    def code_of(self, record: Any) -> str:
        return text(record.get("MaHoSo")) if isinstance(record, dict) else ""
