"""The simulated province: units with their codes and officers, procedures with their durations.

Since 2025-07-01 there is no district level: dossiers are received by the provincial Public Administration
Service Centre (Trung tâm Phục vụ hành chính công tỉnh) and its branches, handled by provincial departments
(Sở ...), and received and handled at commune and ward centres (Decree 118/2025/NĐ-CP, which replaced Decree
61/2018/NĐ-CP). Codes follow Circular 01/2018/TT-VPCP (`V1V2V3.Z1Z2.Y1Y2.MX1X2`) and are opaque, as the
dossier system issues them; place, officer and applicant names are illustrative, not an official list.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.simulator.worktime import DAY_SECONDS, HOUR_SECONDS

__all__ = [
    "FAMILY_NAMES",
    "GIVEN_NAMES",
    "MIDDLE_NAMES",
    "PROCEDURES",
    "STATUS_NATIONAL",
    "STATUS_TEXT",
    "UNITS",
    "Officer",
    "Procedure",
    "Unit",
]


@dataclass(frozen=True, slots=True)
class Officer:
    """An employee who handles dossiers: `currentActionUser` shows the name, `lastActionUserId` the id."""

    user_id: int
    name: str


@dataclass(frozen=True, slots=True)
class Unit:
    """A receiving / handling unit (`govAgencyCode`, `govAgencyName`)."""

    code: str
    name: str
    officers: tuple[Officer, ...]
    # Where applicants of this unit live, for the fake addresses.
    place: str


@dataclass(frozen=True, slots=True)
class Procedure:
    """An administrative procedure (`serviceCode`); duration in days (unit 0) or hours (unit 1)."""

    code: str
    name: str
    domain_code: str
    domain_name: str
    duration_count: float
    duration_unit: int
    unit_codes: tuple[str, ...]
    weight: float

    @property
    def working_seconds(self) -> int:
        # OpenCPS counts a day as 8 working hours.
        per = DAY_SECONDS if self.duration_unit == 0 else HOUR_SECONDS
        return int(self.duration_count * per)


FAMILY_NAMES = (
    "Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Võ", "Phan", "Trương", "Bùi", "Đặng", "Đỗ", "Ngô", "Hồ",
    "Dương", "Lý", "Đinh",
)  # fmt: skip
MIDDLE_NAMES = ("Văn", "Thị", "Hữu", "Minh", "Ngọc", "Thanh", "Quốc", "Kim", "Hoàng", "Thành", "Mỹ")
GIVEN_NAMES = (
    "An", "Bình", "Cường", "Dũng", "Hà", "Hạnh", "Hùng", "Lan", "Linh", "Mai", "Nam", "Phúc", "Quân",
    "Tâm", "Thảo", "Trang", "Tuấn", "Vy", "Yến", "Khoa", "Lộc", "Nhân", "Sang", "Tài", "Thư", "Xuân",
)  # fmt: skip


def _officers(index: int, count: int = 3) -> tuple[Officer, ...]:
    officers = []
    for j in range(count):
        n = index * 7 + j * 3
        name = (
            f"{FAMILY_NAMES[n % len(FAMILY_NAMES)]} {MIDDLE_NAMES[(n + j) % len(MIDDLE_NAMES)]} "
            f"{GIVEN_NAMES[(n * 5 + j) % len(GIVEN_NAMES)]}"
        )
        officers.append(Officer(user_id=20100 + index * 10 + j, name=name))
    return tuple(officers)


_UNIT_ROWS = (
    ("000.00.12.H12", "Trung tâm Phục vụ hành chính công tỉnh", "phường Cao Lãnh"),
    ("000.20.12.H12", "Sở Nông nghiệp và Môi trường", "xã Thường Phước"),
    ("000.21.12.H12", "Sở Giáo dục và Đào tạo", "phường Mỹ Tho"),
    ("000.22.12.H12", "Sở Xây dựng", "phường Sa Đéc"),
    ("000.23.12.H12", "Sở Tài chính", "phường Cao Lãnh"),
    ("000.24.12.H12", "Sở Tư pháp", "xã Thường Lạc"),
    ("000.30.12.H12", "Chi nhánh Trung tâm Phục vụ hành chính công tỉnh khu vực Hồng Ngự", "phường Hồng Ngự"),
    ("001.01.12.H12", "Trung tâm Phục vụ hành chính công xã Long Khánh", "xã Long Khánh"),
    ("001.02.12.H12", "Trung tâm Phục vụ hành chính công xã Thường Phước", "xã Thường Phước"),
    ("001.03.12.H12", "Trung tâm Phục vụ hành chính công phường An Bình", "phường An Bình"),
    ("001.04.12.H12", "Trung tâm Phục vụ hành chính công xã Thường Lạc", "xã Thường Lạc"),
)

UNITS: tuple[Unit, ...] = tuple(
    Unit(code=code, name=name, officers=_officers(index), place=place)
    for index, (code, name, place) in enumerate(_UNIT_ROWS)
)

# Commune and ward centres: civil status and certification are handled there.
_COMMUNES = ("001.01.12.H12", "001.02.12.H12", "001.03.12.H12", "001.04.12.H12")

PROCEDURES: tuple[Procedure, ...] = (
    Procedure(
        "1.004227",
        "Cấp Giấy chứng nhận quyền sử dụng đất, quyền sở hữu nhà ở và tài sản khác gắn liền với đất lần đầu",
        "G09-TN01", "Đất đai", 30, 0, ("000.30.12.H12",), 2.5,
    ),
    Procedure(
        "1.004221", "Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với đất",
        "G09-TN01", "Đất đai", 10, 0, ("000.30.12.H12",), 4,
    ),
    Procedure(
        "1.003003", "Chuyển mục đích sử dụng đất phải được phép của cơ quan nhà nước có thẩm quyền",
        "G09-TN01", "Đất đai", 15, 0, ("000.20.12.H12",), 1.5,
    ),
    Procedure(
        "1.005741", "Đăng ký kế hoạch bảo vệ môi trường",
        "G09-TN04", "Môi trường", 10, 0, ("000.20.12.H12",), 1,
    ),
    Procedure("1.001193", "Đăng ký khai sinh", "G09-TP02", "Hộ tịch", 1, 0, _COMMUNES, 5),
    Procedure("1.000894", "Đăng ký kết hôn", "G09-TP02", "Hộ tịch", 5, 0, _COMMUNES, 1.5),
    Procedure("1.001022", "Đăng ký khai tử", "G09-TP02", "Hộ tịch", 1, 0, _COMMUNES, 1),
    Procedure(
        "2.000815", "Chứng thực bản sao từ bản chính giấy tờ, văn bản",
        "G09-TP03", "Chứng thực", 4, 1, (*_COMMUNES, "000.24.12.H12"), 5,
    ),
    Procedure(
        "2.000884", "Chứng thực chữ ký trong các giấy tờ, văn bản",
        "G09-TP03", "Chứng thực", 4, 1, (*_COMMUNES, "000.24.12.H12"), 1.5,
    ),
    Procedure(
        "1.009994", "Cấp giấy phép xây dựng nhà ở riêng lẻ",
        "G09-XD03", "Cấp phép xây dựng", 15, 0, ("000.22.12.H12",), 2.5,
    ),
    Procedure(
        "2.000720", "Đăng ký thành lập hộ kinh doanh",
        "G09-KH05", "Thành lập và hoạt động của hộ kinh doanh", 3, 0, ("000.23.12.H12",), 3,
    ),
    Procedure(
        "1.001612", "Đăng ký thay đổi nội dung đăng ký hộ kinh doanh",
        "G09-KH05", "Thành lập và hoạt động của hộ kinh doanh", 3, 0, ("000.23.12.H12",), 1.5,
    ),
    Procedure(
        "1.004494", "Chuyển trường đối với học sinh trung học cơ sở",
        "G09-GD02", "Giáo dục trung học", 3, 0, ("000.21.12.H12",), 1.5,
    ),
    Procedure(
        "1.005092", "Công nhận trường mầm non đạt chuẩn Quốc gia",
        "G09-GD01", "Giáo dục mầm non", 20, 0, ("000.21.12.H12",), 0.3,
    ),
    Procedure(
        "2.000633", "Cấp Giấy phép bán lẻ sản phẩm rượu",
        "G09-CT01", "Lưu thông hàng hóa trong nước", 10, 0, ("000.00.12.H12",), 1,
    ),
    Procedure(
        "2.002396", "Giải quyết khiếu nại lần đầu",
        "G09-TTR01", "Giải quyết khiếu nại", 30, 0, ("000.00.12.H12",), 0.4,
    ),
)  # fmt: skip

STATUS_TEXT = {
    "new": "Mới đăng ký",
    "processing": "Đang xử lý",
    "waiting": "Chờ bổ sung",
    "releasing": "Chờ trả kết quả",
    "done": "Đã trả kết quả",
    "denied": "Từ chối giải quyết",
}

# National sync TrangThaiHoSo: 1 new, 2 received, 3 not received, 4 processing, 5 waiting for
# supplement, 6 waiting for payment, 7 waiting for approval, 8 stopped, 9 processed, 10 returned.
STATUS_NATIONAL = {
    "new": "1",
    "processing": "4",
    "waiting": "5",
    "releasing": "9",
    "done": "10",
    "denied": "8",
}
