"""Shared record mapping for dossier sources: scalars, statuses, validation, the `{field: path}` table.

Everything here runs once per record of a 100,000-dossier sync, so no regex runs per record. Paths
are `paths`, dates are read by `dates.DateParser`, refusals are `rejections`, and a fetch's batch is
assembled by `batch.BatchBuilder` (those names are re-exported here for existing importers).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from monitor.dossiers.model import Dossier, DossierStatus

from .batch import BatchBuilder
from .dates import DateParser
from .paths import Path, get_path, split_path
from .rejections import Rejected, RejectReason, quoted_value

__all__ = [
    "DATE_FIELDS",
    "DOSSIER_FIELDS",
    "BatchBuilder",
    "DateParser",
    "FieldMapper",
    "Path",
    "RejectReason",
    "Rejected",
    "get_path",
    "parse_bool",
    "parse_float",
    "parse_status",
    "quoted_value",
    "shared",
    "split_path",
    "validate_dossier",
]

# A field absent from the record (as opposed to present and null).
_MISSING: Final = object()


# --- scalars ----------------------------------------------------------------------------------------

_TRUE_STRINGS: Final = frozenset({"true", "1", "yes", "y", "on", "x", "có", "co"})


def parse_bool(value: Any) -> bool:
    """Truthy mapping used by every source: "true", "1", 1, True, "yes" are true; anything else false."""
    if value is True:
        return True
    if value is None or value is False:
        return False
    if isinstance(value, int | float):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return False


def parse_float(value: Any) -> float | None:
    """A number or numeric string; None when empty or not a number (durations are optional)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip().replace(",", "."))
    except ValueError:
        return None


def text(value: Any) -> str:
    """A string field: None -> "", numbers (e.g. an int user id) -> their decimal text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shared(value: Any) -> str:
    """`text()` of a value repeated across records (unit, procedure, assignee, status): one copy kept.

    100,000 dossiers name a few hundred units, procedures and officers; without interning each
    dossier pins its own copies of those strings from the decoded JSON (about 60 MB at 100,000).
    """
    return sys.intern(text(value))


def parse_status(
    raw: str,
    status_map: Mapping[str, DossierStatus],
    default: DossierStatus | None,
) -> DossierStatus:
    """The normalized status of a raw value, the default, or a Rejected(unknown_status)."""
    status = status_map.get(raw)
    if status is None:
        # Vendors are inconsistent with case and padding; fall back to a normalized lookup.
        status = status_map.get(raw.strip().lower())
    if status is not None:
        return status
    if default is not None:
        return default
    raise Rejected(RejectReason.UNKNOWN_STATUS, "status", f"unknown status {quoted_value(raw)}")


# --- validation -------------------------------------------------------------------------------------


def validate_dossier(dossier: Dossier) -> Dossier:
    """Reject a dossier no deadline can be computed for, or whose dates contradict each other."""
    if not dossier.code:
        raise Rejected(RejectReason.NO_CODE, "code", "missing dossier code")
    if dossier.due_at is None and dossier.extended_due_at is None:
        has_duration = dossier.duration_days is not None or dossier.duration_hours is not None
        if dossier.received_at is None or not has_duration:
            raise Rejected(
                RejectReason.NO_DUE_DATE,
                "due_at",
                "no due date and no received date + duration to compute one",
            )
    if (
        dossier.due_at is not None
        and dossier.received_at is not None
        and dossier.due_at < dossier.received_at
    ):
        raise Rejected(
            RejectReason.DUE_BEFORE_RECEIVED,
            "due_at",
            f"due {dossier.due_at.isoformat()} is before received {dossier.received_at.isoformat()}",
        )
    return dossier


def parse_date_field(parser: DateParser, field: str, value: Any) -> datetime | None:
    """A date field, or Rejected(bad_date) naming the field."""
    try:
        return parser.parse(value)
    except ValueError as exc:
        raise Rejected(RejectReason.BAD_DATE, field, str(exc)) from None


# --- the generic field mapping ----------------------------------------------------------------------

DATE_FIELDS: Final = ("received_at", "due_at", "extended_due_at", "released_at", "finished_at", "modified_at")
_TEXT_FIELDS: Final = (
    "unit_code",
    "unit_name",
    "procedure_code",
    "procedure_name",
    "assignee_id",
    "assignee_name",
)
_BOOL_FIELDS: Final = ("via_postal", "online")
_NUMBER_FIELDS: Final = ("duration_days", "duration_hours")
DOSSIER_FIELDS: Final = ("code", "status", *_TEXT_FIELDS, *DATE_FIELDS, *_BOOL_FIELDS, *_NUMBER_FIELDS)


@dataclass(frozen=True, slots=True)
class _Plan:
    """Pre-split paths of the configured fields, in the order the mapper reads them."""

    code: Path | None
    status: Path | None
    texts: tuple[tuple[str, Path], ...]
    dates: tuple[tuple[str, Path], ...]
    bools: tuple[tuple[str, Path], ...]
    numbers: tuple[tuple[str, Path], ...]


class FieldMapper:
    """Maps one raw record (a JSON object or a CSV row) to a Dossier by a `{field: dotted path}` table.

    Without a `status` field the status is derived from the dates: finished once released or finished,
    open otherwise. CSV rows use `dotted=False` so a header containing a dot is still one column.
    """

    def __init__(
        self,
        source: str,
        fields: Mapping[str, str],
        dates: DateParser,
        status_map: Mapping[str, DossierStatus],
        default_status: DossierStatus | None = None,
        *,
        dotted: bool = True,
    ) -> None:
        unknown = sorted(set(fields) - set(DOSSIER_FIELDS))
        if unknown:
            raise ValueError(f"unknown dossier fields {unknown}")
        if "code" not in fields:
            raise ValueError("fields must map code")

        def path(name: str) -> Path:
            return split_path(fields[name]) if dotted else (fields[name],)

        self.source = source
        self.dates = dates
        self.status_map = dict(status_map)
        self.default_status = default_status
        self._plan = _Plan(
            code=path("code"),
            status=path("status") if "status" in fields else None,
            texts=tuple((name, path(name)) for name in _TEXT_FIELDS if name in fields),
            dates=tuple((name, path(name)) for name in DATE_FIELDS if name in fields),
            bools=tuple((name, path(name)) for name in _BOOL_FIELDS if name in fields),
            numbers=tuple((name, path(name)) for name in _NUMBER_FIELDS if name in fields),
        )

    def code_of(self, record: Any) -> str:
        return text(get_path(record, self._plan.code)) if self._plan.code is not None else ""

    def __call__(self, record: Any) -> Dossier:
        plan = self._plan
        if not isinstance(record, dict):
            raise Rejected(RejectReason.NO_CODE, "", f"record is a {type(record).__name__}, not an object")
        values: dict[str, Any] = {"code": text(get_path(record, plan.code))}
        if not values["code"]:
            raise Rejected(RejectReason.NO_CODE, "code", "missing dossier code")
        for name, field_path in plan.texts:
            values[name] = shared(get_path(record, field_path))
        parser = self.dates
        for name, field_path in plan.dates:
            values[name] = parse_date_field(parser, name, get_path(record, field_path))
        for name, field_path in plan.bools:
            raw = get_path(record, field_path, _MISSING)
            values[name] = None if raw is _MISSING and name == "online" else parse_bool(raw)
        for name, field_path in plan.numbers:
            values[name] = parse_float(get_path(record, field_path))
        if plan.status is not None:
            raw_status = shared(get_path(record, plan.status))
            status = parse_status(raw_status, self.status_map, self.default_status)
        else:
            raw_status = ""
            finished = values.get("released_at") is not None or values.get("finished_at") is not None
            status = DossierStatus.FINISHED if finished else DossierStatus.OPEN
        return validate_dossier(
            Dossier(
                source=self.source,
                unit_code=values.pop("unit_code", ""),
                status=status,
                raw_status=raw_status,
                **values,
            )
        )
