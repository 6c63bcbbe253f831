"""One simulated dossier and how the system shows it: the OpenCPS v2 item, the national record, dates.

A `SimDossier` is simulation state that `monitor.simulator.lifecycle` updates in place; its
serialisations are cached until the next change. Dates are local (Asia/Ho_Chi_Minh) text in the two
formats the real systems use: `dd/MM/yyyy HH:mm:ss` (OpenCPS) and `yyyyMMddHHmmss` (national sync).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from monitor.simulator.catalog import STATUS_NATIONAL, STATUS_TEXT, Officer, Procedure, Unit
from monitor.simulator.worktime import DAY_SECONDS, HOUR_SECONDS, VN, from_line, to_line

__all__ = [
    "CSV_HEADERS",
    "FINISHED_STATUSES",
    "STEP_APPROVE",
    "STEP_NONE",
    "STEP_RECEIVE",
    "STEP_RETURN",
    "STEP_REVIEW",
    "STEP_SUPPLEMENT",
    "Applicant",
    "Extension",
    "SimDossier",
    "Supplement",
    "csv_export",
    "format_local",
    "format_national",
    "parse_local",
]

FINISHED_STATUSES = frozenset({"releasing", "done", "denied"})

# The processing step a dossier is at: (stepCode, stepName).
STEP_RECEIVE = ("200", "Tiếp nhận hồ sơ")
STEP_REVIEW = ("300", "Thẩm định, xử lý hồ sơ")
STEP_SUPPLEMENT = ("350", "Yêu cầu bổ sung hồ sơ")
STEP_APPROVE = ("400", "Lãnh đạo phê duyệt")
STEP_RETURN = ("500", "Trả kết quả")
STEP_NONE = ("", "")


def format_local(moment: datetime | None) -> str:
    """OpenCPS date text: `dd/MM/yyyy HH:mm:ss` local time, empty string for none."""
    if moment is None:
        return ""
    if moment.tzinfo is not VN:
        moment = moment.astimezone(VN)
    # %-formatting is about three times faster than strftime, which matters at 100,000 dossiers.
    return "%02d/%02d/%04d %02d:%02d:%02d" % (  # noqa: UP031
        moment.day,
        moment.month,
        moment.year,
        moment.hour,
        moment.minute,
        moment.second,
    )


def format_national(moment: datetime | None) -> str:
    """National sync date text: `yyyyMMddHHmmss` local time, empty string for none."""
    if moment is None:
        return ""
    if moment.tzinfo is not VN:
        moment = moment.astimezone(VN)
    return "%04d%02d%02d%02d%02d%02d" % (  # noqa: UP031
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
    )


def parse_local(text: str) -> datetime:
    """`dd/MM/yyyy HH:mm:ss` or `dd/MM/yyyy` in local time; raises ValueError."""
    text = text.strip()
    for pattern in ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=VN)
        except ValueError:
            continue
    raise ValueError(f"invalid date {text!r}: use dd/MM/yyyy HH:mm:ss")


@dataclass(frozen=True, slots=True)
class Applicant:
    """Personal data: present in the source so the monitor can prove it never keeps it."""

    name: str = field(repr=False)
    phone: str = field(repr=False)
    email: str = field(repr=False)
    address: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Supplement:
    """One pause for missing papers: the clock stopped at `requested_at` and restarted at `resumed_at`."""

    requested_at: datetime
    resumed_at: datetime
    previous_due: datetime
    new_due: datetime


@dataclass(frozen=True, slots=True)
class Extension:
    """An extension granted at `granted_at`: `extendDate` = `new_due`; `dueDate` stays."""

    granted_at: datetime
    previous_due: datetime
    new_due: datetime


# Mutable on purpose: a dossier is simulation state that events update in place, and 100,000 of them
# must be cheap; its cached serialisations are dropped on every change.
@dataclass(slots=True, eq=False)
class SimDossier:
    """One dossier as the simulated system holds it."""

    dossier_id: int
    dossier_no: str
    reference_uid: str
    procedure: Procedure
    unit: Unit
    created_at: datetime
    received_at: datetime | None
    due_at: datetime | None
    status: str
    assignee: Officer
    last_actor: Officer
    online: bool
    via_postal: bool
    applicant: Applicant
    modified_at: datetime
    step: tuple[str, str] = STEP_REVIEW
    lock_state: str = ""
    extend_at: datetime | None = None
    released_at: datetime | None = None
    finished_at: datetime | None = None
    paused_at: datetime | None = None
    supplements: list[Supplement] = field(default_factory=list)
    extensions: list[Extension] = field(default_factory=list)
    item_json: bytes | None = None
    national_json: bytes | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def touch(self, at: datetime) -> None:
        self.modified_at = at
        self.item_json = None
        self.national_json = None

    def item(self, group_id: str) -> dict[str, object]:
        """The OpenCPS v2 list item (all strings except dossierId, durationCount, durationUnit, ...)."""
        procedure = self.procedure
        coming = ""
        step_due = ""
        if self.due_at is not None:
            # The system's own warning point: one working day before (one hour for hour-based ones).
            lead = DAY_SECONDS if procedure.duration_unit == 0 else HOUR_SECONDS
            coming = str(int(from_line(to_line(self.due_at) - lead).timestamp() * 1000))
            if self.received_at is not None and not self.finished:
                start, end = to_line(self.received_at), to_line(self.due_at)
                step_due = format_local(from_line(start + (end - start) * 7 // 10))
        applicant = self.applicant
        return {
            "dossierId": self.dossier_id,
            "groupId": int(group_id) if group_id.isdigit() else group_id,
            "dossierNo": self.dossier_no,
            "referenceUid": self.reference_uid,
            "serviceCode": procedure.code,
            "serviceName": procedure.name,
            "domainCode": procedure.domain_code,
            "domainName": procedure.domain_name,
            "govAgencyCode": self.unit.code,
            "govAgencyName": self.unit.name,
            "createDate": format_local(self.created_at),
            "modifiedDate": format_local(self.modified_at),
            "submitDate": format_local(self.created_at) if self.online else "",
            "receiveDate": format_local(self.received_at),
            "dueDate": format_local(self.due_at),
            "extendDate": format_local(self.extend_at),
            "releaseDate": format_local(self.released_at),
            "finishDate": format_local(self.finished_at),
            "dossierStatus": self.status,
            "dossierStatusText": STATUS_TEXT[self.status],
            "dossierSubStatus": "",
            "dossierSubStatusText": "",
            "lockState": self.lock_state,
            "online": "true" if self.online else "false",
            "viaPostal": "1" if self.via_postal else "0",
            "durationCount": float(procedure.duration_count),
            "durationUnit": procedure.duration_unit,
            "dueDateComing": coming,
            "stepCode": self.step[0],
            "stepName": self.step[1],
            "stepDuedate": step_due,
            "currentActionUser": "" if self.finished else self.assignee.name,
            "lastActionUserId": self.last_actor.user_id,
            "applicantName": applicant.name,
            "applicantIdType": "citizen",
            "contactTelNo": applicant.phone,
            "contactEmail": applicant.email,
            "address": applicant.address,
        }

    def national(self) -> dict[str, object]:
        """The record in the national sync shape (DongBoHoSoMC); every value is a string."""
        applicant = self.applicant
        return {
            "MaHoSo": self.dossier_no,
            "MaTTHC": self.procedure.code,
            "TenTTHC": self.procedure.name,
            "MaLinhVuc": self.procedure.domain_code,
            "TenLinhVuc": self.procedure.domain_name,
            "KenhThucHien": "2" if self.online else "1",
            "ChuHoSo": applicant.name,
            "LoaiDoiTuong": "1",
            "SoDienThoai": applicant.phone,
            "Email": applicant.email,
            "DiaChi": applicant.address,
            "NgayTiepNhan": format_national(self.received_at),
            "NgayHenTra": format_national(self.due_at),
            "NgayGiaHan": format_national(self.extend_at),
            "TrangThaiHoSo": STATUS_NATIONAL[self.status],
            "NgayKetThucXuLy": format_national(self.released_at),
            "NgayTra": format_national(self.finished_at),
            "HinhThuc": "1" if self.via_postal else "0",
            "DonViXuLy": self.unit.name,
            "MaDonViXuLy": self.unit.code,
            "NgayCapNhat": format_national(self.modified_at),
            "DanhSachHoSoBoSung": [
                {
                    "HoSoBoSungId": f"{self.dossier_id}-{index}",
                    "NguoiYeuCauBoSung": self.assignee.name,
                    "NoiDungYeuCauBoSung": "Bổ sung giấy tờ còn thiếu theo quy định",
                    "NgayBoSung": format_national(supplement.requested_at),
                    "NgayTiepNhanBoSung": format_national(supplement.resumed_at),
                    "NgayHenTraTruoc": format_national(supplement.previous_due),
                    "NgayHenTraMoi": format_national(supplement.new_due),
                }
                for index, supplement in enumerate(self.supplements, start=1)
            ],
            "DanhSachGiaHanXuLy": [
                {
                    "NgayGiaHan": format_national(extension.granted_at),
                    "NgayHenTraTruoc": format_national(extension.previous_due),
                    "NgayHenTraMoi": format_national(extension.new_due),
                }
                for extension in self.extensions
            ],
        }

    def item_bytes(self, group_id: str) -> bytes:
        if self.item_json is None:
            self.item_json = _dumps(self.item(group_id))
        return self.item_json

    def national_bytes(self) -> bytes:
        if self.national_json is None:
            self.national_json = _dumps(self.national())
        return self.national_json


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


CSV_HEADERS = (
    "STT",
    "Mã hồ sơ",
    "Mã thủ tục",
    "Tên thủ tục",
    "Lĩnh vực",
    "Mã đơn vị",
    "Đơn vị xử lý",
    "Chủ hồ sơ",
    "Số điện thoại",
    "Ngày tiếp nhận",
    "Ngày hẹn trả",
    "Ngày gia hạn",
    "Ngày có kết quả",
    "Ngày trả kết quả",
    "Trạng thái",
    "Cán bộ xử lý",
    "Trả qua bưu chính",
)


def csv_export(dossiers: Sequence[SimDossier]) -> str:
    """An officer's export: Vietnamese headers, local dates, personal data included as the real one."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADERS)
    for index, dossier in enumerate(dossiers, start=1):
        writer.writerow(
            (
                index,
                dossier.dossier_no,
                dossier.procedure.code,
                dossier.procedure.name,
                dossier.procedure.domain_name,
                dossier.unit.code,
                dossier.unit.name,
                dossier.applicant.name,
                dossier.applicant.phone,
                format_local(dossier.received_at),
                format_local(dossier.due_at),
                format_local(dossier.extend_at),
                format_local(dossier.released_at),
                format_local(dossier.finished_at),
                STATUS_TEXT[dossier.status],
                "" if dossier.finished else dossier.assignee.name,
                "Có" if dossier.via_postal else "Không",
            )
        )
    return buffer.getvalue()
