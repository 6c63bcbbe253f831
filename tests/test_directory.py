"""The alert directory: loading, phone normalisation and config errors, people by role, assignee matching."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from alerts.config import AlertsConfig
from alerts.directory import Directory, DirectoryConfig, name_key
from alerts.rules import default_rules
from alerts.service import AlertService
from monitor.calendar import Calendars
from monitor.config import ConfigError, load_config_text
from monitor.events import EventBus
from monitor.store import SqliteStore
from tests.routing_helpers import UNIT, alerts_yaml, crossing, load


def _errors(section: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(section)
    return info.value.errors


def _with_person(index: int, **changes: Any) -> dict[str, Any]:
    section = alerts_yaml()
    section["directory"]["people"][index].update(changes)
    return section


def test_directory_loads_and_normalises_phones() -> None:
    """Every accepted phone spelling becomes 84xxxxxxxxx; people keep their roles, units and channels."""
    config = load()
    people = {person.id: person for person in config.alerts.directory.people}
    assert people["officer-an"].phone == "84912345678"
    assert people["desk-binh"].phone == "84987654321"
    assert people["head-cuong"].phone == "84355555555"
    assert people["it-em"].channels == ["sms", "log"]
    assert people["leader-dung"].units == []
    # No alerts section at all: an empty directory and the default rules.
    assert load_config_text("{}", environ={}).alerts.directory.people == []


def test_person_repr_hides_contacts() -> None:
    """Phone numbers and Zalo ids stay out of reprs (they end up in logs and tracebacks)."""
    person = load().alerts.directory.people[0]
    assert "912345678" not in repr(person)
    assert "912345678" not in str(person)
    assert "officer-an" in repr(person)


@pytest.mark.parametrize(
    ("phone", "message"),
    [
        (
            "0123",
            "alerts.directory.people[2].phone: '0123' is not a vietnamese mobile number: "
            "must have 10 digits starting with 0 (or +84 and 9 digits)",
        ),
        (
            "0212345678",
            "alerts.directory.people[2].phone: '0212345678' is not a vietnamese mobile number "
            "(03, 05, 07, 08, 09)",
        ),
        (
            "09x2345678",
            "alerts.directory.people[2].phone: '09x2345678' is not a vietnamese mobile number: "
            "must contain only digits, spaces, dots or a leading +84",
        ),
    ],
)
def test_bad_phone_numbers_are_rejected_with_their_path(phone: str, message: str) -> None:
    """A bad phone number fails the load with the person's YAML path and a short reason."""
    assert _errors(_with_person(2, phone=phone)) == [message]


def test_unknown_role_unit_and_duplicate_id() -> None:
    """Unknown roles and unit codes, and a repeated person id, are each reported at their path."""
    section = alerts_yaml()
    people = section["directory"]["people"]
    people[0]["roles"] = ["officer", "boss"]
    people[1]["units"] = ["X9"]
    people.append(copy.deepcopy(people[4]))
    errors = _errors(section)
    assert errors == [
        "alerts.directory.people[0].roles[1]: unknown role 'boss' "
        "(expected one of officer, one_stop, unit_head, leader, it_oncall)",
    ]
    people[0]["roles"] = ["officer"]
    assert _errors(section) == [
        "alerts.directory.people[1].units[0]: unknown unit code 'X9'",
        "alerts.directory.people[6].id: duplicate person id 'leader-dung'",
    ]


def test_unknown_channels_in_people_and_rules() -> None:
    """A person or a rule naming a channel that is not configured fails with the exact path."""
    section = _with_person(5, channels=["zalo", "log"])
    section["rules"] = [
        {"name": "x", "on": ["target_down"], "to": ["it_oncall", "boss"], "channels": ["sms", "oa"]}
    ]
    errors = _errors(section)
    assert errors == [
        "alerts.rules[0].to[1]: unknown role 'boss' "
        "(expected assignee or one of officer, one_stop, unit_head, leader, it_oncall)",
    ]
    section["rules"][0]["to"] = ["it_oncall"]
    assert _errors(section) == [
        "alerts.directory.people[5].channels[0]: unknown channel 'zalo'",
        "alerts.rules[0].channels[1]: unknown channel 'oa'",
    ]


def test_duplicate_channel_names_and_rule_options() -> None:
    """Channel names are unique; rule options must fit the rule's kinds."""
    section = alerts_yaml()
    section["channels"].append({"type": "log", "name": "sms"})
    assert _errors(section) == ["alerts.channels[2].name: duplicate channel name 'sms'"]
    section = alerts_yaml(rules=[{"name": "r", "on": ["due_soon"], "to": ["one_stop"], "repeat": "1h"}])
    assert _errors(section) == ["alerts.rules[0]: repeat only applies to target_down"]
    section = alerts_yaml(rules=[{"name": "r", "on": ["target_up"], "to": ["it_oncall"]}])
    assert _errors(section)[0].startswith(
        "alerts.rules[0].on[0]: unknown event kind 'target_up' (expected one of"
    )


def test_default_rules_follow_who_gets_what() -> None:
    """Without `rules` the issue's defaults apply: dossiers to assignee/one-stop/head/leaders, IT the rest."""
    config = load().alerts
    assert [rule.name for rule in config.rules] == [rule.name for rule in default_rules()]
    by_name = {rule.name: rule for rule in config.rules}
    assert by_name["due-soon"].to == ["assignee", "one_stop"]
    assert by_name["last-warning-escalation"].to == ["unit_head"]
    assert by_name["overdue"].to == ["unit_head", "leader"]
    assert by_name["degraded"].degraded_after.total_seconds() == 900
    assert by_name["sync-failing"].sync_after.total_seconds() == 1800
    assert by_name["cert-expiring"].cert_days == 14
    assert config.quiet_hours is not None and (config.quiet_hours.start, config.quiet_hours.end) == (
        "21:00",
        "06:30",
    )
    assert AlertsConfig().digest.at == "07:30"


def test_people_for_roles_and_units() -> None:
    """People are found by role; those without units cover every unit; unit=None ignores units."""
    directory = Directory(load().alerts.directory)
    assert [p.id for p in directory.people_for(["one_stop"], UNIT)] == ["desk-binh"]
    assert [p.id for p in directory.people_for(["one_stop"], "U2")] == ["desk-other"]
    assert [p.id for p in directory.people_for(["one_stop"])] == ["desk-binh", "desk-other"]
    assert [p.id for p in directory.people_for(["unit_head", "leader"], UNIT)] == [
        "head-cuong",
        "leader-dung",
    ]
    assert [p.id for p in directory.people_for(["unit_head", "leader"], "U2")] == ["leader-dung"]
    assert directory.person("it-em") is not None and directory.person("nobody") is None
    assert directory.unit_name(UNIT) == "Sở Nông nghiệp và Môi trường"
    assert directory.unit_name("unknown") == "unknown"


def test_match_assignee_by_id_then_by_name() -> None:
    """Ids win; names match without case or diacritics, via the person's name or the configured mapping."""
    directory = Directory(load().alerts.directory)
    assert directory.match_assignee("cb-0001", "someone else", UNIT).id == "officer-an"  # type: ignore[union-attr]
    assert directory.match_assignee("", "NGUYEN VAN AN", UNIT).id == "officer-an"  # type: ignore[union-attr]
    assert directory.match_assignee("x", "nguyễn  văn   an", None).id == "officer-an"  # type: ignore[union-attr]
    assert directory.match_assignee(None, "Nguyễn Văn An (TNMT)").id == "officer-an"  # type: ignore[union-attr]
    assert name_key("  Đặng Thị Ánh ") == "dang thi anh"


def test_namesakes_are_told_apart_by_unit_and_unmatched_summarised() -> None:
    """Two people with one name: the unit decides; misses are counted and summarised in one line."""
    config = DirectoryConfig.model_validate(
        {
            "units": [{"code": "A"}, {"code": "B"}],
            "people": [
                {"id": "lan-a", "name": "Trần Thị Lan", "units": ["A"], "roles": ["officer"]},
                {"id": "lan-b", "name": "Tran Thi Lan", "units": ["B"], "roles": ["officer"]},
            ],
        }
    )
    directory = Directory(config)
    assert directory.match_assignee("", "Trần Thị Lan", "B").id == "lan-b"  # type: ignore[union-attr]
    with capture_logs() as logs:
        assert directory.match_assignee("", "Trần Thị Lan", None) is None
        assert directory.match_assignee("u-9", "Lê Văn Tám", "A") is None
        assert directory.match_assignee("u-9", "Le Van Tam", "A") is None
        assert logs == []
        directory.report_unmatched()
    assert [(entry["event"], entry["count"], entry["assignees"]) for entry in logs] == [
        (
            "assignees_unmatched",
            2,
            {"Trần Thị Lan (several people have this name)": 1, "Lê Văn Tám [u-9]": 2},
        )
    ]
    assert directory.unmatched == {"|tran thi lan": 1, "u-9|le van tam": 2}


def test_unmatched_summary_lists_only_new_assignees_after_the_first() -> None:
    """Later summaries name only assignees no earlier one listed; none at all when nothing is new."""
    directory = Directory(load().alerts.directory)
    with capture_logs() as logs:
        for _ in range(19):
            directory.match_assignee("x-1", "Phạm Văn Hùng", UNIT)
        directory.report_unmatched()
        directory.match_assignee("x-1", "Phạm Văn Hùng", UNIT)
        directory.report_unmatched()
        directory.match_assignee("x-2", "Võ Thị Mai", UNIT)
        directory.match_assignee("x-1", "Phạm Văn Hùng", UNIT)
        directory.report_unmatched()
    assert [entry["assignees"] for entry in logs] == [
        {"Phạm Văn Hùng [x-1]": 19},
        {"Võ Thị Mai [x-2]": 1},
    ]


def test_assignee_ids_belong_to_one_person() -> None:
    """The same dossier-system id on two people would make matching arbitrary: rejected."""
    section = _with_person(1, assignee_ids=["cb-0001"])
    assert _errors(section) == [
        "alerts.directory.people[1].assignee_ids[0]: assignee id 'cb-0001' already belongs to 'officer-an'"
    ]


async def test_alert_service_logs_one_unmatched_summary_per_batch(tmp_path: Path) -> None:
    """A sync's worth of crossings for unknown officers gives one summary line, not one per officer."""
    config = load()
    bus = EventBus()
    async with SqliteStore(tmp_path / "service.db") as store:
        service = AlertService(config, store, bus, Calendars(config.calendars, config.zone))
        with capture_logs() as logs:
            await service.start()
            try:
                for index in range(5):
                    bus.publish(
                        crossing(index + 1, assignee_id=f"x-{index % 3}", assignee_name=f"Cán bộ {index % 3}")
                    )
                for _ in range(200):
                    if any(entry["event"] == "assignees_unmatched" for entry in logs):
                        break
                    await asyncio.sleep(0.02)
            finally:
                await service.stop(grace=2)
    summaries = [entry for entry in logs if entry["event"] in ("assignees_unmatched", "assignee_unmatched")]
    assert len(summaries) == 1
    assert summaries[0]["assignees"] == {"Cán bộ 0 [x-0]": 2, "Cán bộ 1 [x-1]": 2, "Cán bộ 2 [x-2]": 1}
