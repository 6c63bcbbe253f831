"""Alert templates: Vietnamese defaults, no applicant data, overrides validated at load, SMS-safe keep."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.model import AlertKind
from alerts.templates import (
    DEFAULT_TEMPLATES,
    TEMPLATE_FIELDS,
    Templates,
    format_elapsed,
    format_working_left,
    validate_template,
)
from alerts.text import count_segments, fit_segments, unaccent
from monitor.config import ConfigError
from tests.routing_helpers import CODE, alerts_yaml, load, local


def _due_soon_fields() -> dict[str, object]:
    return {
        "code": CODE,
        "procedure": "Cấp GCN QSDĐ",
        "left": format_working_left(timedelta(hours=4)),
        "due": local("2026-10-06 14:00"),
    }


def test_due_soon_default_text() -> None:
    """The due-soon template reads like the issue's example, with the code and due time kept for SMS."""
    rendered = Templates().render(
        AlertKind.DUE_SOON, _due_soon_fields(), keep=(CODE, "14:00 06/10", "absent")
    )
    assert rendered.text == (
        f"[TTHC] Hồ sơ {CODE} (Cấp GCN QSDĐ) còn 4 giờ làm việc, hạn 14:00 06/10. "
        "Nếu không kịp, gửi Phiếu xin lỗi trước hạn."
    )
    assert unaccent(rendered.text) == (
        f"[TTHC] Ho so {CODE} (Cap GCN QSDD) con 4 gio lam viec, han 14:00 06/10. "
        "Neu khong kip, gui Phieu xin loi truoc han."
    )
    assert rendered.keep == (CODE, "14:00 06/10")
    assert rendered.template_params["code"] == CODE
    assert rendered.template_params["due"] == "14:00 06/10/2026"
    assert rendered.template_params["left"] == "4 giờ"


def test_every_default_template_is_valid_and_asks_for_no_personal_data() -> None:
    """Each kind's default validates, and no kind offers a field for applicant names or contacts."""
    for kind, text in DEFAULT_TEMPLATES.items():
        validate_template(kind, text)
    offered = {name for fields in TEMPLATE_FIELDS.values() for name in fields}
    assert not offered & {"applicant", "applicant_name", "phone", "address", "email", "citizen"}


def test_sms_truncation_keeps_code_and_due_time() -> None:
    """A long overridden text still fits one SMS after unaccenting, without losing the code or due time."""
    long_text = (
        "[TTHC] Hồ sơ {code} ({procedure}) của đơn vị rất dài còn {left} làm việc, hạn {due:%H:%M %d/%m}. "
        "Đề nghị cán bộ kiểm tra ngay, phối hợp bộ phận một cửa và báo cáo lãnh đạo "
        "trước khi hết giờ hôm nay."
    )
    rendered = Templates({"due_soon": long_text}).render(
        AlertKind.DUE_SOON, _due_soon_fields(), keep=(CODE, "14:00 06/10")
    )
    text = unaccent(rendered.text)
    assert count_segments(text) == 2
    fitted = fit_segments(text, 1, rendered.keep)
    assert count_segments(fitted) == 1
    assert CODE in fitted and "14:00 06/10" in fitted


def test_working_time_and_elapsed_in_vietnamese() -> None:
    """Working time counts 8-hour days; elapsed time counts 24-hour days; both drop zero parts."""
    assert format_working_left(timedelta(hours=16)) == "2 ngày"
    assert format_working_left(timedelta(hours=12)) == "1 ngày 4 giờ"
    assert format_working_left(timedelta(minutes=45)) == "45 phút"
    assert format_working_left(timedelta(hours=-3)) == "0 phút"
    assert format_working_left(timedelta(hours=30), timedelta(hours=24)) == "1 ngày 6 giờ"
    assert format_elapsed(timedelta(hours=26, minutes=5)) == "1 ngày 2 giờ"
    assert format_elapsed(8100) == "2 giờ 15 phút"


def test_overrides_render_and_unknown_fields_fail_at_load() -> None:
    """A valid override replaces the default; an unknown field or bad format names the template."""
    config = load(alerts_yaml(templates={"target_down": "{target} sập lúc {since:%H:%M} ({reason})"}))
    assert config.alerts.templates["target_down"].startswith("{target}")
    rendered = Templates(config.alerts.templates).render(
        AlertKind.TARGET_DOWN,
        {"target": "dvc", "since": local("2026-10-06 23:10"), "reason": "quá thời gian chờ"},
    )
    assert rendered.text == "dvc sập lúc 23:10 (quá thời gian chờ)"

    with pytest.raises(ConfigError) as info:
        load(alerts_yaml(templates={"due_soon": "Hồ sơ {code} của {applicant_name}"}))
    assert info.value.errors == [
        "alerts.templates.due_soon: unknown field {applicant_name} in template due_soon "
        "(fields: code, procedure, procedure_code, unit, unit_code, left, due, threshold, apology, "
        "apology_by, assignee, outage, late)"
    ]
    with pytest.raises(ConfigError) as info:
        load(alerts_yaml(templates={"digest": "{count:%H:%M} hồ sơ", "nonsense": "x", "overdue": "{0}"}))
    assert info.value.errors == [
        "alerts.templates.digest: template digest: invalid format specifier '%H:%M' for object of type 'int'",
        "alerts.templates.nonsense: unknown alert kind 'nonsense' "
        "(expected one of due_soon, last_warning, overdue, target_down, target_recovered, "
        "target_degraded, cert_expiring, sync_failing, digest, test, target_down_group, target_down_more, "
        "target_down_repeat, target_recovered_group)",
        "alerts.templates.overdue: template overdue: positional field {0}; use a name",
    ]


def test_template_syntax_errors_and_private_attributes_are_rejected() -> None:
    """Unbalanced braces and attribute tricks reaching into objects fail validation."""
    with pytest.raises(ValueError, match="template due_soon: single '}' encountered"):
        validate_template(AlertKind.DUE_SOON, "Hồ sơ {code}}")
    with pytest.raises(ValueError, match="unknown field"):
        validate_template(AlertKind.DUE_SOON, "{due.__class__}")


def test_zns_template_params_must_be_filled_by_the_alert() -> None:
    """A ZNS parameter mapped to a field no alert of that kind carries is a config error, at its path."""
    section = alerts_yaml()
    section["channels"].append(
        {
            "type": "zalo_zns",
            "name": "zns",
            "app_id": "1",
            "secret_key": "zalo-secret",
            "refresh_token": "r",
            "templates": {
                "due_soon": {"template_id": "123", "params": {"ma_ho_so": "code", "han": "deadline"}}
            },
        }
    )
    with pytest.raises(ConfigError) as info:
        load(section)
    assert info.value.errors == [
        "alerts.channels[2].templates.due_soon.params.han: unknown field 'deadline' for due_soon "
        "(fields: code, procedure, unit, left, due, threshold, alert_id, kind, person_id, text)"
    ]
