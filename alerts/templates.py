"""Alert texts in Vietnamese: short, actionable, overridable per kind, never with applicant data.

Templates use `str.format` fields (`{code}`, `{due:%H:%M %d/%m}`). Each kind has a fixed set of fields;
an override naming another field, or whose format spec does not fit the value, is rejected at config
load by rendering it against sample values. Events never carry applicant names or contacts, and no
field exposes them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from alerts.model import AlertKind
from monitor.model import FailureReason

__all__ = [
    "DEFAULT_TEMPLATES",
    "GROUP_TEMPLATES",
    "GROUP_TEMPLATE_FIELDS",
    "REASON_TEXT",
    "TEMPLATE_FIELDS",
    "TEMPLATE_PARAMS",
    "RenderedAlert",
    "Templates",
    "format_elapsed",
    "format_targets",
    "format_working_left",
    "reason_text",
    "validate_template",
]

DEFAULT_TEMPLATES: dict[AlertKind, str] = {
    AlertKind.DUE_SOON: (
        "[TTHC] Hồ sơ {code} ({procedure}) còn {left} làm việc, hạn {due:%H:%M %d/%m}. "
        "Nếu không kịp, gửi Phiếu xin lỗi trước hạn."
    ),
    AlertKind.LAST_WARNING: (
        "[TTHC] Cảnh báo cuối: hồ sơ {code} ({procedure}, {unit}) còn {left} làm việc, "
        "hạn {due:%H:%M %d/%m}. Nếu không kịp, gửi Phiếu xin lỗi {apology}."
    ),
    AlertKind.OVERDUE: (
        "[TTHC] Hồ sơ {code} ({procedure}, {unit}) đã quá hạn từ {due:%H:%M %d/%m}. "
        "{outage}Cần gửi Phiếu xin lỗi và hẹn lại ngày trả."
    ),
    AlertKind.TARGET_DOWN: (
        "[TTHC] {target} NGỪNG HOẠT ĐỘNG từ {since:%H:%M %d/%m}: {reason}. Sự cố #{incident}.{reminder}"
    ),
    AlertKind.TARGET_RECOVERED: (
        "[TTHC] {target} đã hoạt động lại lúc {until:%H:%M %d/%m}, gián đoạn {duration}. Sự cố #{incident}."
    ),
    AlertKind.TARGET_DEGRADED: (
        "[TTHC] {target} hoạt động không ổn định hơn {duration} (từ {since:%H:%M %d/%m}): {reason}."
    ),
    AlertKind.CERT_EXPIRING: (
        "[TTHC] Chứng thư TLS của {target} hết hạn ngày {expiry:%d/%m/%Y} (còn {days} ngày). "
        "Cần gia hạn trước ngày này."
    ),
    AlertKind.SYNC_FAILING: (
        "[TTHC] Đồng bộ hồ sơ từ {source} lỗi từ {since:%H:%M %d/%m} ({failures} lần): {reason}. "
        "Cảnh báo hạn hồ sơ có thể bị thiếu."
    ),
    AlertKind.DIGEST: "[TTHC] {date:%d/%m}: {count} hồ sơ sắp đến hạn: {codes}{more}.",
    AlertKind.TEST: "[TTHC] Tin nhắn thử của tthc-monitor gửi tới {person}. Không cần trả lời.",
}

# Several targets down in one outage (alerts/grouping.py): the first message, a follow-up naming the ones
# that went down later, a reminder (the rule's `repeat`) naming the ones still down, and the recovery
# once all are back. A one-target outage uses the kinds' own texts.
GROUP_TEMPLATES: dict[str, tuple[AlertKind, str]] = {
    "target_down_group": (
        AlertKind.TARGET_DOWN,
        "[TTHC] {count} hệ thống NGỪNG HOẠT ĐỘNG từ {since:%H:%M %d/%m}: {targets} ({reason}). "
        "Sự cố #{incident}.",
    ),
    "target_down_more": (
        AlertKind.TARGET_DOWN,
        "[TTHC] Thêm {count} hệ thống ngừng hoạt động từ {since:%H:%M %d/%m}: {targets} ({reason}). "
        "Cùng sự cố #{incident}, tổng {total} hệ thống.",
    ),
    "target_down_repeat": (
        AlertKind.TARGET_DOWN,
        "[TTHC] Nhắc lại: {count} hệ thống vẫn ngừng hoạt động từ {since:%H:%M %d/%m} ({duration}): "
        "{targets} ({reason}). Sự cố #{incident}.",
    ),
    "target_recovered_group": (
        AlertKind.TARGET_RECOVERED,
        "[TTHC] {count} hệ thống đã hoạt động lại lúc {until:%H:%M %d/%m}: {targets}, "
        "gián đoạn {duration}. Sự cố #{incident}.",
    ),
}
GROUP_TEMPLATE_FIELDS = ("targets", "count", "total", "reason", "since", "until", "duration", "incident")

_DOSSIER_FIELDS = (
    "code",
    "procedure",
    "procedure_code",
    "unit",
    "unit_code",
    "left",
    "due",
    "threshold",
    "apology",
    "apology_by",
    "assignee",
    "outage",
    "late",
)

TEMPLATE_FIELDS: dict[AlertKind, tuple[str, ...]] = {
    AlertKind.DUE_SOON: _DOSSIER_FIELDS,
    AlertKind.LAST_WARNING: _DOSSIER_FIELDS,
    AlertKind.OVERDUE: _DOSSIER_FIELDS,
    AlertKind.TARGET_DOWN: ("target", "reason", "detail", "since", "incident", "duration", "reminder"),
    AlertKind.TARGET_RECOVERED: ("target", "since", "until", "duration", "incident"),
    AlertKind.TARGET_DEGRADED: ("target", "reason", "detail", "since", "duration"),
    AlertKind.CERT_EXPIRING: ("target", "days", "expiry", "detail"),
    AlertKind.SYNC_FAILING: ("source", "reason", "since", "failures", "duration"),
    AlertKind.DIGEST: ("date", "count", "codes", "more", "first"),
    AlertKind.TEST: ("person",),
}

# What a ZNS template may be filled with (`ZaloZnsConfig.templates[kind].params` values), as text.
TEMPLATE_PARAMS: dict[AlertKind, tuple[str, ...]] = {
    AlertKind.DUE_SOON: ("code", "procedure", "unit", "left", "due", "threshold"),
    AlertKind.LAST_WARNING: ("code", "procedure", "unit", "left", "due", "threshold", "apology"),
    AlertKind.OVERDUE: ("code", "procedure", "unit", "due", "late", "outage"),
    AlertKind.TARGET_DOWN: ("target", "reason", "since", "incident", "duration"),
    AlertKind.TARGET_RECOVERED: ("target", "since", "until", "duration", "incident"),
    AlertKind.TARGET_DEGRADED: ("target", "reason", "since", "duration"),
    AlertKind.CERT_EXPIRING: ("target", "days", "expiry"),
    AlertKind.SYNC_FAILING: ("source", "reason", "since", "failures", "duration"),
    AlertKind.DIGEST: ("date", "count", "codes", "more", "first"),
    AlertKind.TEST: ("person",),
}

REASON_TEXT: dict[str, str] = {
    FailureReason.TIMEOUT: "quá thời gian chờ",
    FailureReason.REFUSED: "từ chối kết nối",
    FailureReason.DNS: "lỗi phân giải tên miền",
    FailureReason.TLS: "lỗi TLS",
    FailureReason.CERT_EXPIRING: "chứng thư sắp hết hạn",
    FailureReason.STATUS: "mã phản hồi HTTP sai",
    FailureReason.BODY_MISMATCH: "nội dung trang không đúng",
    FailureReason.SLOW: "phản hồi chậm",
    FailureReason.ERROR: "lỗi",
}

_SAMPLE_TIME = datetime(2026, 10, 6, 14, 0, tzinfo=UTC)
_SAMPLES: dict[str, Any] = {
    "code": "000.00.12.H12-261005-0001",
    "procedure": "Cấp GCN QSDĐ",
    "procedure_code": "1.004227",
    "unit": "Sở NN&MT",
    "unit_code": "000.00.12.H12",
    "left": "4 giờ",
    "due": _SAMPLE_TIME,
    "threshold": "4h",
    "apology": "ngay",
    "apology_by": _SAMPLE_TIME,
    "assignee": "Cán bộ",
    "outage": "",
    "late": "1 giờ",
    "target": "dichvucong",
    "reason": "quá thời gian chờ",
    "detail": "timeout",
    "since": _SAMPLE_TIME,
    "until": _SAMPLE_TIME,
    "incident": 1,
    "duration": "15 phút",
    "reminder": "",
    "days": 7,
    "expiry": _SAMPLE_TIME.date(),
    "source": "opencps",
    "failures": 3,
    "date": _SAMPLE_TIME.date(),
    "count": 3,
    "codes": "A, B, C",
    "more": "",
    "first": "A",
    "person": "officer-1",
    "targets": "dichvucong, motcua, api +2 khác",
    "total": 5,
}

_ROOT = re.compile(r"^([^.\[]*)")


def validate_template(kind: AlertKind | str, text: str) -> None:
    """ValueError (short, naming the template) unless `text` is a usable template for `kind` (an alert
    kind or a GROUP_TEMPLATES name)."""
    allowed = _fields_of(kind)
    name = kind.value if isinstance(kind, AlertKind) else kind
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"template {name}: {_lower(exc)}") from None
    for _literal, field_name, _spec, _conversion in parsed:
        if field_name is None:
            continue
        root = _ROOT.match(field_name)[1]  # type: ignore[index]
        if not root or root.isdigit():
            raise ValueError(f"template {name}: positional field {{{field_name}}}; use a name")
        if root not in allowed or "._" in field_name or field_name.startswith("_"):
            raise ValueError(f"unknown field {{{root}}} in template {name} (fields: {', '.join(allowed)})")
    try:
        text.format(**{field: _SAMPLES[field] for field in allowed})
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"template {name}: {_lower(exc)}") from None


def _fields_of(kind: AlertKind | str) -> tuple[str, ...]:
    if isinstance(kind, AlertKind):
        return TEMPLATE_FIELDS[kind]
    return GROUP_TEMPLATE_FIELDS


def _lower(exc: Exception) -> str:
    message = str(exc)
    return message[:1].lower() + message[1:]


@dataclass(frozen=True, slots=True)
class RenderedAlert:
    """A rendered text with its ZNS parameters and what SMS truncation must keep."""

    text: str
    template_params: Mapping[str, str] = field(default_factory=dict)
    keep: tuple[str, ...] = ()


class Templates:
    """Default templates with config overrides (validated by the config already)."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self._texts: dict[AlertKind, str] = dict(DEFAULT_TEMPLATES)
        self._group_texts = {name: text for name, (_kind, text) in GROUP_TEMPLATES.items()}
        for kind, text in (overrides or {}).items():
            if kind in self._group_texts:
                self._group_texts[kind] = text
            else:
                self._texts[AlertKind(kind)] = text

    def text_for(self, kind: AlertKind) -> str:
        return self._texts[kind]

    def render_group(self, name: str, fields: Mapping[str, Any], keep: Sequence[str] = ()) -> RenderedAlert:
        """Render the GROUP_TEMPLATES text `name`; its ZNS parameters are those of the alert kind it sends
        as, `target` being the list of targets."""
        kind = GROUP_TEMPLATES[name][0]
        values = {field: fields.get(field, "") for field in GROUP_TEMPLATE_FIELDS}
        text = " ".join(self._group_texts[name].format(**values).split())
        known = {**values, "target": values["targets"]}
        params = {field: _param_text(known.get(field, "")) for field in TEMPLATE_PARAMS[kind]}
        return RenderedAlert(text, params, tuple(item for item in keep if item and item in text))

    def render(self, kind: AlertKind, fields: Mapping[str, Any], keep: Sequence[str] = ()) -> RenderedAlert:
        """Render `kind` with `fields`; `keep` candidates are kept only when they appear in the text."""
        values = {name: fields.get(name, "") for name in TEMPLATE_FIELDS[kind]}
        text = " ".join(self._texts[kind].format(**values).split())
        params = {name: _param_text(values[name]) for name in TEMPLATE_PARAMS[kind]}
        return RenderedAlert(text, params, tuple(item for item in keep if item and item in text))


def _param_text(value: Any) -> str:
    if isinstance(value, datetime):
        return f"{value:%H:%M %d/%m/%Y}"
    if isinstance(value, date):
        return f"{value:%d/%m/%Y}"
    return str(value).strip()


def format_targets(names: Sequence[str], shown: int = 3) -> str:
    """The first `shown` names and how many more, short enough for one SMS: `a, b, c +2 khác`."""
    listed = ", ".join(names[:shown])
    rest = len(names) - shown
    return f"{listed} +{rest} khác" if rest > 0 else listed


def reason_text(reason: str | None) -> str:
    """A failure reason in Vietnamese (`timeout` → `quá thời gian chờ`); unknown ones as they are."""
    if not reason:
        return "không rõ nguyên nhân"
    return REASON_TEXT.get(reason, reason)


def _parts(total_minutes: int, units: Sequence[tuple[int, str]]) -> str:
    parts: list[str] = []
    rest = total_minutes
    for size, name in units:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count} {name}")
    return " ".join(parts[:2]) or "0 phút"


def format_working_left(left: timedelta, day_length: timedelta = timedelta(hours=8)) -> str:
    """Working time in Vietnamese: one day is `day_length` (8 working hours): `1 ngày 4 giờ`, `45 phút`."""
    minutes = max(0, round(left.total_seconds() / 60))
    day_minutes = max(1, round(day_length.total_seconds() / 60))
    return _parts(minutes, ((day_minutes, "ngày"), (60, "giờ"), (1, "phút")))


def format_elapsed(elapsed: timedelta | float) -> str:
    """Wall-clock time in Vietnamese: `2 giờ 15 phút`, `3 ngày 4 giờ`, `0 phút`."""
    seconds = elapsed.total_seconds() if isinstance(elapsed, timedelta) else float(elapsed)
    minutes = max(0, round(seconds / 60))
    return _parts(minutes, ((1440, "ngày"), (60, "giờ"), (1, "phút")))
