"""The /status page as HTML and inline CSS: Vietnamese labels, readable on a phone, nothing loaded.

A day's details (uptime, downtime, incidents) open on hover, on keyboard focus or on a tap: each bar is a
focusable element whose tip CSS shows on `:hover`/`:focus`, so no script is needed. Every text from the
store or the config is escaped.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from monitor.vi import HEALTH, cause_label, format_moment, format_percent, format_span_vi
from monitor.web.status_view import DayBar, StatusView, TargetStatus

__all__ = ["bar_class", "render_status"]

_CSS = """
:root{--ok:#1f9d55;--minor:#8cc63f;--major:#f0a202;--bad:#d64545;--none:#d9dde3;--maint:#5b7fd6;
--ink:#1d2733;--muted:#5d6b7a;--line:#e3e7ec;--bg:#f5f7fa}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Helvetica Neue",Arial,sans-serif}
main{max-width:960px;margin:0 auto;padding:16px}
header{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;gap:4px 16px;
margin:8px 0 16px}
h1{font-size:1.5rem;margin:0}
h2{font-size:1.1rem;margin:28px 0 10px}
.updated{color:var(--muted);margin:0;font-size:.9rem}
.banner{border-radius:8px;padding:14px 16px;font-weight:600;color:#fff;background:var(--ok)}
.banner.bad{background:var(--bad)}
.banner.warn{background:var(--major);color:#2b1d00}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:0 0 12px}
.head{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:6px 12px;
margin-bottom:10px}
h3{font-size:1rem;margin:0;word-break:break-word}
.state{font-size:.85rem;font-weight:600;padding:2px 10px;border-radius:999px;white-space:nowrap}
.state.up{background:#e3f5ea;color:#12653a}
.state.degraded{background:#fff2d6;color:#7a4b00}
.state.down{background:#fbe4e4;color:#9b1c1c}
.state.unknown{background:#eceff3;color:#45515e}
.state.maintenance{background:#e4ebfb;color:#2a4aa0}
.bars{position:relative;display:grid;grid-template-columns:repeat(90,minmax(0,1fr));gap:2px}
.bar{display:block;height:34px;border-radius:2px;background:var(--none);outline:none;cursor:pointer}
.bar.ok{background:var(--ok)}.bar.minor{background:var(--minor)}
.bar.major{background:var(--major)}.bar.bad{background:var(--bad)}
.bar:hover,.bar:focus{box-shadow:0 0 0 2px var(--ink)}
.tip{display:none;position:absolute;left:0;right:0;top:100%;z-index:5;margin-top:8px;padding:10px 12px;
background:#fff;border:1px solid var(--line);border-radius:8px;box-shadow:0 6px 18px rgba(20,30,40,.18);
font-size:.9rem;cursor:default}
.bar:hover .tip,.bar:focus .tip{display:block}
.tip b{display:block}
.tip .line{display:block}
.tip .inc{display:block;color:var(--muted)}
.axis{display:flex;justify-content:space-between;gap:8px;color:var(--muted);font-size:.8rem;margin-top:6px;
white-space:nowrap}
.axis .pct{color:var(--ink);font-weight:600}
.incidents{list-style:none;margin:0;padding:0}
.incidents li{background:#fff;border:1px solid var(--line);border-left:4px solid var(--bad);
border-radius:8px;padding:10px 14px;margin-bottom:8px}
.incidents .what{font-weight:600}
.incidents .when{color:var(--muted);font-size:.9rem}
.none{color:var(--muted);margin:0}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid var(--line);border-radius:8px;
overflow:hidden;font-size:.95rem}
th,td{padding:8px 10px;border-bottom:1px solid var(--line);text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#eef1f5;font-weight:600;font-size:.85rem}
td.overdue{color:#9b1c1c;font-weight:600}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;color:var(--muted);font-size:.8rem;margin:20px 0 8px;
padding:0;list-style:none}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
vertical-align:-1px;background:var(--none)}
.legend .ok{background:var(--ok)}.legend .minor{background:var(--minor)}
.legend .major{background:var(--major)}.legend .bad{background:var(--bad)}
footer{color:var(--muted);font-size:.8rem;margin:8px 0 24px}
@media (max-width:600px){main{padding:10px}.bars{gap:1px}.bar{height:30px;border-radius:1px}
.card{padding:12px}th,td{padding:7px 6px}h1{font-size:1.3rem}}
"""

_LEGEND = (
    ("ok", "100%"),
    ("minor", "từ 99% đến dưới 100%"),
    ("major", "từ 95% đến dưới 99%"),
    ("bad", "dưới 95%"),
    ("none", "không có dữ liệu"),
)


def bar_class(ratio: float | None) -> str:
    """The colour of a day: the legend's thresholds."""
    if ratio is None:
        return "none"
    if ratio >= 1:
        return "ok"
    if ratio >= 0.99:
        return "minor"
    if ratio >= 0.95:
        return "major"
    return "bad"


def render_status(view: StatusView) -> str:
    parts = [
        '<!doctype html><html lang="vi"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        "<title>Trạng thái hệ thống</title><style>",
        _CSS,
        "</style></head><body><main>",
        '<header><h1>Trạng thái hệ thống</h1><p class="updated">Cập nhật lúc ',
        escape(format_moment(view.now, view.zone)),
        "</p></header>",
        _banner(view),
        _open_incidents(view),
        '<h2>Các hệ thống</h2><section class="targets">',
        *(_target(view, target) for target in view.targets),
        "</section>",
        _legend(),
        _units(view),
        "<footer>Thời gian hoạt động tính trên thời gian được giám sát, theo ngày (giờ Việt Nam),",
        " không tính thời gian bảo trì theo kế hoạch.</footer>",
        "</main></body></html>",
    ]
    return "".join(parts)


def _banner(view: StatusView) -> str:
    down = sum(1 for target in view.targets if target.state == "down")
    slow = sum(1 for target in view.targets if target.state == "degraded")
    if not view.targets:
        return '<p class="banner warn">Chưa cấu hình hệ thống nào để giám sát.</p>'
    if down:
        return f'<p class="banner bad">{down} hệ thống đang gián đoạn</p>'
    if slow:
        return f'<p class="banner warn">{slow} hệ thống đang phản hồi chậm</p>'
    return '<p class="banner">Tất cả hệ thống đang hoạt động bình thường</p>'


def _open_incidents(view: StatusView) -> str:
    head = '<h2>Sự cố đang diễn ra</h2><section class="open">'
    if not view.open_incidents:
        return head + '<p class="none">Không có sự cố nào đang diễn ra.</p></section>'
    items = []
    for incident in view.open_incidents:
        lasted = format_span_vi(view.now - incident.started_at)
        items.append(
            f'<li><span class="what">{escape(incident.target)}: {escape(cause_label(incident.reason))}'
            f'</span><br><span class="when">Từ {escape(format_moment(incident.started_at, view.zone))}'
            f" (đã {escape(lasted)})</span></li>"
        )
    return head + '<ul class="incidents">' + "".join(items) + "</ul></section>"


def _target(view: StatusView, target: TargetStatus) -> str:
    state = HEALTH.get(target.state, HEALTH["unknown"])
    since = ""
    if target.since is not None:
        since = f' title="từ {escape(format_moment(target.since, view.zone))}"'
    bars = "".join(_bar(view, day) for day in target.days)
    return (
        f'<article class="card target"><div class="head"><h3>{escape(target.name)}</h3>'
        f'<span class="state {escape(target.state)}"{since}>{escape(state)}</span></div>'
        f'<div class="bars" aria-label="Thời gian hoạt động {len(target.days)} ngày">{bars}</div>'
        f'<div class="axis"><span>{len(target.days)} ngày trước</span>'
        f'<span class="pct">{escape(format_percent(target.uptime_ratio))} hoạt động</span>'
        "<span>Hôm nay</span></div></article>"
    )


def _bar(view: StatusView, day: DayBar) -> str:
    label = day.day.strftime("%d/%m/%Y")
    if day.uptime_ratio is None:
        summary = "Không có dữ liệu giám sát"
    else:
        summary = f"Hoạt động {format_percent(day.uptime_ratio)}"
        if day.downtime_seconds > 0:
            summary += f" · gián đoạn {format_span_vi(day.downtime_seconds)}"
    lines = [f"<b>{label}</b>", f'<span class="line">{escape(summary)}</span>']
    for incident in day.incidents:
        start = _time_on(incident.started_at, day, view)
        end = "đang diễn ra" if incident.ended_at is None else _time_on(incident.ended_at, day, view)
        cause = cause_label(incident.reason)
        lines.append(f'<span class="inc">{escape(start)} – {escape(end)}: {escape(cause)}</span>')
    if day.uptime_ratio is not None and not day.incidents:
        lines.append('<span class="inc">Không có sự cố</span>')
    return (
        f'<span class="bar {bar_class(day.uptime_ratio)}" tabindex="0" data-day="{day.day.isoformat()}"'
        f' aria-label="{escape(label)}: {escape(summary)}"><span class="tip">{"".join(lines)}</span></span>'
    )


def _time_on(moment: datetime, day: DayBar, view: StatusView) -> str:
    """The time of day alone when it falls on the bar's day, else with its date."""
    local = moment.astimezone(view.zone)
    return local.strftime("%H:%M") if local.date() == day.day else format_moment(moment, view.zone)


def _legend() -> str:
    items = "".join(f'<li><i class="{cls}"></i>{escape(text)}</li>' for cls, text in _LEGEND)
    return f'<ul class="legend">{items}</ul>'


def _units(view: StatusView) -> str:
    if view.units is None:
        return ""
    head = "<h2>Hồ sơ sắp đến hạn và quá hạn theo đơn vị</h2>"
    if not view.units:
        return head + '<p class="none">Chưa có hồ sơ nào đang được theo dõi.</p>'
    rows = "".join(
        f"<tr><td>{escape(unit.name)}</td><td>{unit.due_soon}</td><td>{unit.due_today}</td>"
        f'<td class="{"overdue" if unit.overdue else ""}">{unit.overdue}</td></tr>'
        for unit in view.units
    )
    return (
        head + '<table class="units"><thead><tr><th scope="col">Đơn vị</th><th scope="col">Sắp đến hạn</th>'
        '<th scope="col">Đến hạn hôm nay</th><th scope="col">Quá hạn</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
