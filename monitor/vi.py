"""Vietnamese wording shown to people (status page, SLA report): states, causes, numbers, durations, times.

Only bounded vocabularies are translated here; probe details (which may name internal hosts) never are,
because they are never shown outside the JSON API.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from monitor.durations import format_duration

__all__ = [
    "CAUSES",
    "HEALTH",
    "cause_label",
    "format_day",
    "format_moment",
    "format_percent",
    "format_span_vi",
]

HEALTH = {
    "up": "Hoạt động bình thường",
    "degraded": "Phản hồi chậm",
    "down": "Gián đoạn",
    "unknown": "Chưa có dữ liệu",
    "maintenance": "Đang bảo trì",
}

# monitor.model.FailureReason values; an unknown one reads as the generic cause.
CAUSES = {
    "timeout": "Quá thời gian phản hồi",
    "refused": "Không kết nối được",
    "dns": "Lỗi phân giải tên miền",
    "tls": "Lỗi kết nối bảo mật (TLS)",
    "cert_expiring": "Chứng chỉ sắp hết hạn",
    "status": "Máy chủ trả mã lỗi",
    "body_mismatch": "Nội dung trang không đúng",
    "slow": "Phản hồi quá chậm",
    "error": "Lỗi khác",
}


def cause_label(reason: str | None) -> str:
    if reason is None:
        return "Không rõ nguyên nhân"
    return CAUSES.get(reason, CAUSES["error"])


def format_percent(ratio: float | None, digits: int = 2) -> str:
    """`99,95%` (Vietnamese decimal comma); a dash when there is nothing to measure."""
    if ratio is None:
        return "–"
    value = ratio * 100
    # Never round a ratio short of 1 up to 100 %: a page saying 100 % next to an incident misleads.
    text = f"{value:.{digits}f}"
    if ratio < 1 and float(text) >= 100:
        text = f"{100 - 10**-digits:.{digits}f}"
    return text.replace(".", ",") + "%"


def format_span_vi(value: timedelta | float) -> str:
    """`2 giờ 5 phút`, `45 giây`, `3 ngày 2 giờ`."""
    return format_duration(value, ("{} ngày", "{} giờ", "{} phút", "{} giây"))


def format_moment(moment: datetime, zone: ZoneInfo) -> str:
    """`14:05 01/12/2026` in the office's zone."""
    return moment.astimezone(zone).strftime("%H:%M %d/%m/%Y")


def format_day(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%d/%m/%Y")
