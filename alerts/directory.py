"""Who is who: units, people, their roles and contacts, and matching dossier assignees to people.

The directory is config (`alerts.directory`); `Directory` is its runtime index. Phone numbers are
normalised once at load (`84xxxxxxxxx`), so nothing downstream re-parses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any

import structlog
from pydantic import AfterValidator, Field, field_validator, model_validator

from alerts.channels.base import normalize_phone
from alerts.text import unaccent
from monitor.configtypes import StrictModel, raise_at

__all__ = [
    "ROLES",
    "Directory",
    "DirectoryConfig",
    "PersonConfig",
    "UnitConfig",
    "name_key",
    "raise_at",
]

log = structlog.get_logger("alerts.directory")

ROLES = ("officer", "one_stop", "unit_head", "leader", "it_oncall")

# Person ids end up inside outbox de-duplication keys (`crossing:12:<id>`), which use ':' as separator.
_PERSON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_PHONE_MESSAGE = re.compile(r"^phone ('.*?') (.*)$")


def name_key(name: str) -> str:
    """How assignee names are compared: without diacritics, case or repeated spaces."""
    return " ".join(unaccent(name).casefold().split())


def _known_role(value: str) -> str:
    if value not in ROLES:
        raise ValueError(f"unknown role {value!r} (expected one of {', '.join(ROLES)})")
    return value


Role = Annotated[str, AfterValidator(_known_role)]


class UnitConfig(StrictModel):
    """A unit (Sở, Trung tâm Phục vụ hành chính công, UBND xã/phường...) as the dossier system codes it."""

    code: str = Field(min_length=1)
    name: str = ""


class PersonConfig(StrictModel):
    """One person who may receive alerts. Empty `units` = every unit (leaders, IT on-call)."""

    id: str
    name: str = ""
    phone: str | None = None
    zalo_user_id: str | None = None
    units: list[str] = Field(default_factory=list)
    roles: list[Role] = Field(default_factory=list)
    # Preferred channel names, in fallback order; empty = every channel able to reach this person.
    channels: list[str] = Field(default_factory=list)
    # How the dossier system names this person as an assignee.
    assignee_ids: list[str] = Field(default_factory=list)
    assignee_names: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _PERSON_ID.match(value):
            raise ValueError(
                f"{value!r} is not a valid person id (letters, digits, '_', '.', '-'; at most 40)"
            )
        return value

    @field_validator("phone", mode="before")
    @classmethod
    def _normal_phone(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML reads an unquoted 84912345678 as an int (a leading 0 would have made it a string).
            value = str(value)
        if not isinstance(value, str):
            raise ValueError("phone must be a string like 0912345678")
        try:
            return normalize_phone(value, reveal=True)
        except ValueError as exc:
            raise ValueError(_phone_message(str(exc))) from None

    def __repr__(self) -> str:
        # Phone numbers and Zalo ids are personal data: keep them out of logs and tracebacks.
        return f"PersonConfig(id={self.id!r}, roles={self.roles!r}, units={self.units!r})"

    __str__ = __repr__


def _phone_message(message: str) -> str:
    """normalize_phone's reason around the value: `'0123' is not a vietnamese mobile number: ...`."""
    match = _PHONE_MESSAGE.match(message)
    if match is None:
        return message
    shown, rest = match.groups()
    if rest.startswith("is not"):
        return f"{shown} {rest}"
    return f"{shown} is not a vietnamese mobile number: {rest}"


class DirectoryConfig(StrictModel):
    """`alerts.directory`: units and people."""

    units: list[UnitConfig] = Field(default_factory=list)
    people: list[PersonConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> DirectoryConfig:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        codes: set[str] = set()
        for index, unit in enumerate(self.units):
            if unit.code in codes:
                problems.append((("units", index, "code"), f"duplicate unit code {unit.code!r}"))
            codes.add(unit.code)
        ids: set[str] = set()
        assignee_owner: dict[str, str] = {}
        for index, person in enumerate(self.people):
            if person.id in ids:
                problems.append((("people", index, "id"), f"duplicate person id {person.id!r}"))
            ids.add(person.id)
            for position, code in enumerate(person.units):
                if code not in codes:
                    problems.append((("people", index, "units", position), f"unknown unit code {code!r}"))
            for position, assignee_id in enumerate(person.assignee_ids):
                owner = assignee_owner.setdefault(assignee_id, person.id)
                if owner != person.id:
                    problems.append(
                        (
                            ("people", index, "assignee_ids", position),
                            f"assignee id {assignee_id!r} already belongs to {owner!r}",
                        )
                    )
        raise_at(problems, "directory")
        return self


class Directory:
    """Runtime index over `DirectoryConfig`: people by role and unit, and assignee matching."""

    def __init__(self, config: DirectoryConfig) -> None:
        self.config = config
        self._people = {person.id: person for person in config.people}
        self._units = {unit.code: unit for unit in config.units}
        self._by_assignee_id: dict[str, PersonConfig] = {}
        self._by_name: dict[str, list[PersonConfig]] = {}
        for person in config.people:
            for assignee_id in person.assignee_ids:
                self._by_assignee_id[assignee_id] = person
            keys = {name_key(name) for name in person.assignee_names}
            if person.name:
                keys.add(name_key(person.name))
            for key in keys:
                if key:
                    self._by_name.setdefault(key, []).append(person)
        # assignee label → times seen unmatched; `report_unmatched` logs the names not yet reported.
        self.unmatched: dict[str, int] = {}
        self._shown: dict[str, str] = {}
        self._reported: set[str] = set()

    @property
    def people(self) -> tuple[PersonConfig, ...]:
        return tuple(self._people.values())

    def person(self, person_id: str) -> PersonConfig | None:
        return self._people.get(person_id)

    def unit_name(self, code: str) -> str:
        unit = self._units.get(code)
        return unit.name if unit is not None and unit.name else code

    def has_unit(self, code: str) -> bool:
        return code in self._units

    def people_for(self, roles: Iterable[str], unit: str | None = None) -> list[PersonConfig]:
        """People holding any of `roles` who cover `unit` (no `units` = all); config order."""
        wanted = set(roles)
        return [
            person
            for person in self._people.values()
            if wanted.intersection(person.roles)
            and (unit is None or not person.units or unit in person.units)
        ]

    def match_assignee(
        self, assignee_id: str | None, assignee_name: str | None, unit: str | None = None
    ) -> PersonConfig | None:
        """The person behind a dossier's assignee: by id, then by name (several namesakes: the one in
        `unit`); None when nobody (or more than one person) fits."""
        if assignee_id and (person := self._by_assignee_id.get(assignee_id)) is not None:
            return person
        candidates = self._by_name.get(name_key(assignee_name or ""), []) if assignee_name else []
        if len(candidates) > 1 and unit is not None:
            candidates = [person for person in candidates if unit in person.units]
        if len(candidates) == 1:
            return candidates[0]
        if assignee_id or assignee_name:
            self._unmatched(assignee_id or "", assignee_name or "", ambiguous=len(candidates) > 1)
        return None

    def _unmatched(self, assignee_id: str, assignee_name: str, *, ambiguous: bool) -> None:
        label = f"{assignee_id}|{name_key(assignee_name)}"
        self.unmatched[label] = self.unmatched.get(label, 0) + 1
        if label not in self._shown:
            # The officer's name as the dossier system spells it, so an admin can add the mapping.
            shown = assignee_name or "(no name)"
            if assignee_id:
                shown += f" [{assignee_id}]"
            if ambiguous:
                shown += " (several people have this name)"
            self._shown[label] = shown

    def report_unmatched(self) -> None:
        """Log one line listing the assignees nobody matched that no earlier line listed, with how often
        each was seen; nothing when there is none. Called once per batch (a sync, start-up), so start-up
        is not buried under one warning per officer."""
        new = [label for label in self.unmatched if label not in self._reported]
        if not new:
            return
        self._reported.update(new)
        log.warning(
            "assignees_unmatched",
            count=len(new),
            assignees={self._shown[label]: self.unmatched[label] for label in new},
            hint="map them with assignee_ids or assignee_names in alerts.directory.people",
        )
