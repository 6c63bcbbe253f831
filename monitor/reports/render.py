"""The SLA report written out: Markdown and HTML in Vietnamese for people, CSV for spreadsheets.

Markdown and HTML share one table model (`_tables`), so they always show the same rows. The HTML prints
on A4: `@page` size and margins, table headers repeated on every page, no row split across pages.
CSV has one header and a `section` column (target, incident, unit), plain numbers and ISO times.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from html import escape

from monitor.reports.sla import SlaReport, TargetSla, UnitSla
from monitor.vi import cause_label, format_moment, format_percent, format_span_vi

__all__ = ["FORMATS", "render"]


@dataclass(frozen=True, slots=True)
class _Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str
    # Column classes: n = a number (right-aligned, one line), t = a time (one line); others wrap.
    kinds: str = ""

    def kind(self, index: int) -> str:
        return self.kinds[index] if index < len(self.kinds) else "-"


def _month_label(report: SlaReport) -> str:
    return f"{report.month.month:02d}/{report.month.year}"


def _duration(seconds: float | None) -> str:
    return "–" if seconds is None else format_span_vi(seconds)


def _ratio_delta(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "–"
    points = (now - before) * 100
    sign = "+" if points > 0 else ""
    return f"{sign}{points:.3f}".replace(".", ",") + " điểm %"


def _target_row(target: TargetSla) -> tuple[str, ...]:
    return (
        target.name,
        _duration(target.monitored_seconds),
        _duration(target.unmonitored_seconds),
        format_percent(target.uptime_ratio, 3),
        _duration(target.downtime_seconds),
        _duration(target.downtime_working_seconds),
        _duration(target.downtime_off_hours_seconds),
        str(len(target.incidents)),
        _duration(target.mttr_seconds),
    )


def _unit_row(unit: UnitSla) -> tuple[str, ...]:
    return (
        unit.name,
        str(unit.returned),
        str(unit.early),
        str(unit.on_time),
        str(unit.late),
        format_percent(unit.on_time_ratio, 1),
        str(unit.overdue),
        str(unit.overdue_during_outage),
        format_percent(unit.postal_ratio, 1),
    )


def _tables(report: SlaReport) -> list[_Table]:
    zone = report.zone
    incidents = []
    for target in report.targets:
        for line in target.incidents:
            incidents.append(
                (
                    target.name,
                    f"#{line.id}",
                    format_moment(line.started_at, zone),
                    "chưa kết thúc" if line.ended_at is None else format_moment(line.ended_at, zone),
                    _duration(line.counted_seconds),
                    cause_label(line.cause),
                )
            )
    tables = [
        _Table(
            "Hệ thống",
            (
                "Hệ thống",
                "Thời gian giám sát",
                "Không giám sát",
                "Tỷ lệ hoạt động",
                "Gián đoạn",
                "Trong giờ làm việc",
                "Ngoài giờ làm việc",
                "Số sự cố",
                "MTTR",
            ),
            tuple(_target_row(target) for target in report.targets),
            "Không có dữ liệu giám sát trong tháng.",
            "-nnnnnnnn",
        ),
        _Table(
            "Sự cố",
            ("Hệ thống", "Mã", "Bắt đầu", "Kết thúc", "Tính vào gián đoạn", "Nguyên nhân ban đầu"),
            tuple(incidents),
            "Không có sự cố trong tháng.",
            "-tttn-",
        ),
        _Table(
            "Hồ sơ theo đơn vị",
            (
                "Đơn vị",
                "Đã trả",
                "Trước hạn",
                "Đúng hạn",
                "Trễ hạn",
                "Tỷ lệ đúng hạn",
                "Quá hạn",
                "Quá hạn khi hệ thống gặp sự cố",
                "Trả qua bưu chính",
            ),
            tuple(_unit_row(unit) for unit in report.units),
            "Không có hồ sơ được trả hoặc quá hạn trong tháng.",
            "-nnnnnnnn",
        ),
    ]
    if report.previous is not None:
        before = _month_label(report.previous)
        targets = [(t, report.previous_target(t.name)) for t in report.targets]
        tables.append(
            _comparison(
                f"So sánh với tháng {before}: hệ thống",
                ("Hệ thống", "Tỷ lệ hoạt động", "Sự cố"),
                before,
                [
                    (
                        now.name,
                        now.uptime_ratio,
                        old and old.uptime_ratio,
                        len(now.incidents),
                        old and len(old.incidents),
                    )
                    for now, old in targets
                ],
                3,
                tables[0].empty,
            )
        )
        units = [(u, report.previous_unit(u.code)) for u in report.units]
        tables.append(
            _comparison(
                f"So sánh với tháng {before}: hồ sơ",
                ("Đơn vị", "Tỷ lệ đúng hạn", "Quá hạn"),
                before,
                [
                    (now.name, now.on_time_ratio, old and old.on_time_ratio, now.overdue, old and old.overdue)
                    for now, old in units
                ],
                1,
                tables[2].empty,
            )
        )
    return tables


def _comparison(
    title: str,
    labels: tuple[str, str, str],
    before: str,
    lines: list[tuple[str, float | None, float | None, int, int | None]],
    digits: int,
    empty: str,
) -> _Table:
    """This month beside the previous one: a ratio, its change in points, and a count."""
    name, ratio, counted = labels
    return _Table(
        title,
        (name, ratio, f"Tháng {before}", "Chênh lệch", counted, f"{counted} {before}"),
        tuple(
            (
                label,
                format_percent(now, digits),
                format_percent(old, digits),
                _ratio_delta(now, old),
                str(count),
                "–" if old_count is None else str(old_count),
            )
            for label, now, old, count, old_count in lines
        ),
        empty,
        "-nnnnn",
    )


def _intro(report: SlaReport) -> list[str]:
    zone = report.zone
    made = format_moment(report.generated_at, zone)
    return [
        f"Khoảng thời gian: {format_moment(report.start, zone)} – {format_moment(report.end, zone)}"
        f" ({zone.key}). Lịch làm việc: {report.calendar}. Lập lúc {made}.",
        "Tỷ lệ hoạt động tính trên thời gian được giám sát, trừ thời gian bảo trì theo kế hoạch; chỉ phần sự"
        " cố nằm trong tháng và ngoài thời gian bảo trì được tính."
        " MTTR: thời lượng trung bình của các sự cố kết thúc trong tháng.",
    ]


def _title(report: SlaReport) -> str:
    return f"Báo cáo chất lượng dịch vụ (SLA) tháng {_month_label(report)}"


def render_markdown(report: SlaReport) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"# {_title(report)}", "", *_intro(report), ""]
    for table in _tables(report):
        lines += [f"## {table.title}", ""]
        if not table.rows:
            lines += [table.empty, ""]
            continue
        lines.append("| " + " | ".join(cell(header) for header in table.headers) + " |")
        aligns = ("---:" if table.kind(i) == "n" else ":---" for i in range(len(table.headers)))
        lines.append("|" + "|".join(aligns) + "|")
        lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.rows]
        lines.append("")
    return "\n".join(lines)


_PRINT_CSS = """
@page{size:A4;margin:14mm 12mm 16mm}
*{box-sizing:border-box}
body{margin:0;color:#1d2733;font:10.5pt/1.45 "DejaVu Sans","Noto Sans",Arial,sans-serif}
main{max-width:186mm;margin:0 auto}
h1{font-size:16pt;margin:0 0 4pt}
h2{font-size:12pt;margin:16pt 0 6pt;break-after:avoid;page-break-after:avoid}
p{margin:0 0 4pt}
.intro{color:#4a5868;font-size:9pt}
table{width:100%;border-collapse:collapse;font-size:8pt;margin-bottom:6pt}
thead{display:table-header-group}
tr{break-inside:avoid;page-break-inside:avoid}
th,td{border:1px solid #c9d1da;padding:2.5pt 4pt;vertical-align:top;text-align:left}
th{background:#eef1f5;font-weight:600}
td.n,th.n{text-align:right}
td.n,td.t{white-space:nowrap}
td{overflow-wrap:anywhere}
th:first-child{width:24%}
.empty{color:#4a5868;font-style:italic}
@media screen{body{background:#f5f7fa}main{background:#fff;padding:16mm 12mm;margin:16px auto}}
"""


def render_html(report: SlaReport) -> str:
    parts = [
        '<!doctype html><html lang="vi"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(_title(report))}</title><style>{_PRINT_CSS}</style></head><body><main>",
        f"<h1>{escape(_title(report))}</h1>",
        *(f'<p class="intro">{escape(line)}</p>' for line in _intro(report)),
    ]
    for table in _tables(report):
        parts.append(f"<section><h2>{escape(table.title)}</h2>")
        if not table.rows:
            parts.append(f'<p class="empty">{escape(table.empty)}</p></section>')
            continue

        def css(index: int, table: _Table = table) -> str:
            kind = table.kind(index)
            return f' class="{kind}"' if kind in "nt" else ""

        head = "".join(f"<th{css(i)}>{escape(h)}</th>" for i, h in enumerate(table.headers))
        body = "".join(
            "<tr>" + "".join(f"<td{css(i)}>{escape(v)}</td>" for i, v in enumerate(row)) + "</tr>"
            for row in table.rows
        )
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>")
    parts.append("</main></body></html>")
    return "".join(parts)


_CSV_COLUMNS = (
    "section",
    "month",
    "name",
    "monitored_seconds",
    "unmonitored_seconds",
    "uptime_percent",
    "downtime_seconds",
    "downtime_working_seconds",
    "downtime_off_hours_seconds",
    "incidents",
    "mttr_seconds",
    "previous_uptime_percent",
    "incident_id",
    "started_at",
    "ended_at",
    "counted_seconds",
    "cause",
    "unit_code",
    "returned",
    "early",
    "on_time",
    "late",
    "on_time_percent",
    "overdue",
    "overdue_during_outage",
    "postal_percent",
    "previous_on_time_percent",
)


def _number(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _percent(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio * 100:.4f}"


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def render_csv(report: SlaReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    month = str(report.month)
    for target in report.targets:
        previous = report.previous_target(target.name)
        writer.writerow(
            {
                "section": "target",
                "month": month,
                "name": target.name,
                "monitored_seconds": _number(target.monitored_seconds),
                "unmonitored_seconds": _number(target.unmonitored_seconds),
                "uptime_percent": _percent(target.uptime_ratio),
                "downtime_seconds": _number(target.downtime_seconds),
                "downtime_working_seconds": _number(target.downtime_working_seconds),
                "downtime_off_hours_seconds": _number(target.downtime_off_hours_seconds),
                "incidents": len(target.incidents),
                "mttr_seconds": _number(target.mttr_seconds),
                "previous_uptime_percent": _percent(previous.uptime_ratio if previous else None),
            }
        )
        for line in target.incidents:
            writer.writerow(
                {
                    "section": "incident",
                    "month": month,
                    "name": target.name,
                    "incident_id": line.id,
                    "started_at": _iso(line.started_at),
                    "ended_at": _iso(line.ended_at),
                    "counted_seconds": _number(line.counted_seconds),
                    "cause": line.cause or "",
                }
            )
    for unit in report.units:
        previous_unit = report.previous_unit(unit.code)
        writer.writerow(
            {
                "section": "unit",
                "month": month,
                "name": unit.name,
                "unit_code": unit.code,
                "returned": unit.returned,
                "early": unit.early,
                "on_time": unit.on_time,
                "late": unit.late,
                "on_time_percent": _percent(unit.on_time_ratio),
                "overdue": unit.overdue,
                "overdue_during_outage": unit.overdue_during_outage,
                "postal_percent": _percent(unit.postal_ratio),
                "previous_on_time_percent": _percent(previous_unit.on_time_ratio if previous_unit else None),
            }
        )
    return out.getvalue()


FORMATS: dict[str, Callable[[SlaReport], str]] = {
    "md": render_markdown,
    "csv": render_csv,
    "html": render_html,
}


def render(report: SlaReport, form: str) -> str:
    """The report as `md`, `csv` or `html` text."""
    try:
        return FORMATS[form](report)
    except KeyError:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {form!r}") from None
