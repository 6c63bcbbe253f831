"""Alert rules: which events alert whom, on which channels, when and how often.

A rule matches event kinds (`on`), names its recipients (`to`: roles and/or the dossier's `assignee`)
and how to reach them. When several rules name the same person for the same event, the first rule
wins, so that person gets one message.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from alerts.directory import ROLES
from alerts.model import AlertKind, Severity
from monitor.configtypes import Duration, PositiveDuration, StrictModel

__all__ = [
    "DEFAULT_SEVERITY",
    "DOSSIER_KINDS",
    "GROUP_INTERVAL",
    "GROUP_WAIT",
    "RULE_KINDS",
    "RuleConfig",
    "default_rules",
]

# What a rule can be `on`: every alert kind except the ones the router makes itself.
RULE_KINDS: tuple[str, ...] = tuple(
    kind.value for kind in AlertKind if kind not in (AlertKind.DIGEST, AlertKind.TEST)
)
DOSSIER_KINDS = frozenset({AlertKind.DUE_SOON, AlertKind.LAST_WARNING, AlertKind.OVERDUE})
RECIPIENTS = (*ROLES, "assignee")

DEFAULT_SEVERITY: dict[AlertKind, Severity] = {
    AlertKind.DUE_SOON: Severity.WARNING,
    AlertKind.LAST_WARNING: Severity.WARNING,
    AlertKind.OVERDUE: Severity.WARNING,
    # An outage wakes the on-call; its recovery goes out at once too, so nobody is left wondering.
    AlertKind.TARGET_DOWN: Severity.CRITICAL,
    AlertKind.TARGET_RECOVERED: Severity.CRITICAL,
    AlertKind.TARGET_DEGRADED: Severity.WARNING,
    AlertKind.CERT_EXPIRING: Severity.INFO,
    AlertKind.SYNC_FAILING: Severity.WARNING,
    AlertKind.DIGEST: Severity.INFO,
    AlertKind.TEST: Severity.CRITICAL,
}

# Outages (target_down, target_recovered) are grouped per person as Alertmanager groups alerts: targets
# going down within `group_wait` of the first become one message; later ones one follow-up at most per
# `group_interval` (alerts/grouping.py).
GROUP_WAIT = timedelta(seconds=30)
GROUP_INTERVAL = timedelta(minutes=5)
_OUTAGE_KINDS = frozenset({"target_down", "target_recovered"})

_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _known_kind(value: str) -> str:
    if value not in RULE_KINDS:
        raise ValueError(f"unknown event kind {value!r} (expected one of {', '.join(RULE_KINDS)})")
    return value


def _known_recipient(value: str) -> str:
    if value not in RECIPIENTS:
        raise ValueError(f"unknown role {value!r} (expected assignee or one of {', '.join(ROLES)})")
    return value


RuleKind = Annotated[str, AfterValidator(_known_kind)]
Recipient = Annotated[str, AfterValidator(_known_recipient)]


class RuleConfig(StrictModel):
    """One routing rule; see the module docstring."""

    name: str
    on: list[RuleKind] = Field(min_length=1)
    to: list[Recipient] = Field(min_length=1)
    # Channel names in fallback order; empty = each person's preferred channels.
    channels: list[str] = Field(default_factory=list)
    # target_down: one reminder every `repeat` naming the targets of the outage still down; None = none.
    repeat: PositiveDuration | None = None
    # Delivered at the end of quiet hours, unless the severity is critical.
    quiet_hours: bool = True
    # Not before the next working moment of the unit's calendar.
    working_hours_only: bool = False
    # None = the kind's default (see DEFAULT_SEVERITY).
    severity: Severity | None = None
    # due_soon alerts of this rule go into each person's morning digest instead of one message each.
    digest: bool = False
    # Only these targets (target kinds) or dossier sources (sync_failing); None = all.
    targets: list[str] | None = None
    # target_degraded: DEGRADED longer than this; sync_failing: failing or stale longer than this.
    after: PositiveDuration | None = None
    # cert_expiring: the certificate expires within this many days.
    days: int | None = Field(default=None, ge=1, le=365)
    # target_down: how long the first down target waits for others to join its message (0 = at once),
    # and how often at most a follow-up names targets that went down later in the same outage.
    group_wait: Duration = GROUP_WAIT
    group_interval: PositiveDuration = GROUP_INTERVAL

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _RULE_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid rule name (letters, digits, '_', '.', '-')")
        return value

    @model_validator(mode="after")
    def _options_fit_kinds(self) -> RuleConfig:
        kinds = set(self.on)
        if self.after is not None and not kinds & {"target_degraded", "sync_failing"}:
            raise ValueError("after only applies to target_degraded and sync_failing")
        if self.days is not None and "cert_expiring" not in kinds:
            raise ValueError("days only applies to cert_expiring")
        if self.repeat is not None and "target_down" not in kinds:
            raise ValueError("repeat only applies to target_down")
        grouping = {"group_wait", "group_interval"} & self.model_fields_set
        if grouping and not kinds & _OUTAGE_KINDS:
            raise ValueError(f"{sorted(grouping)[0]} only applies to target_down and target_recovered")
        if self.group_wait > timedelta(hours=1):
            raise ValueError("group_wait must be at most 1h (the first outage message waits that long)")
        if "assignee" in self.to and not kinds & {kind.value for kind in DOSSIER_KINDS}:
            raise ValueError("assignee only applies to dossier kinds (due_soon, last_warning, overdue)")
        return self

    @property
    def kinds(self) -> frozenset[AlertKind]:
        return frozenset(AlertKind(kind) for kind in self.on)

    def severity_for(self, kind: AlertKind) -> Severity:
        return self.severity if self.severity is not None else DEFAULT_SEVERITY[kind]

    @property
    def degraded_after(self) -> timedelta:
        return self.after if self.after is not None else timedelta(minutes=15)

    @property
    def sync_after(self) -> timedelta:
        return self.after if self.after is not None else timedelta(minutes=30)

    @property
    def cert_days(self) -> int:
        return self.days if self.days is not None else 14

    def covers(self, name: str) -> bool:
        """Whether the `targets` filter lets a target (or dossier source) through."""
        return self.targets is None or name in self.targets


def default_rules() -> list[RuleConfig]:
    """The issue's "who gets what" when `alerts.rules` is omitted."""
    return [
        # Every due-soon threshold: the handling officer and the unit's one-stop desk, in working hours
        # (the time left is counted in working time anyway).
        RuleConfig(
            name="due-soon",
            on=["due_soon", "last_warning"],
            to=["assignee", "one_stop"],
            working_hours_only=True,
        ),
        # The last warning also escalates to the unit head (the apology slip is due a working day ahead).
        RuleConfig(
            name="last-warning-escalation", on=["last_warning"], to=["unit_head"], working_hours_only=True
        ),
        RuleConfig(name="overdue", on=["overdue"], to=["unit_head", "leader"]),
        RuleConfig(name="outage", on=["target_down", "target_recovered"], to=["it_oncall"]),
        RuleConfig(name="degraded", on=["target_degraded"], to=["it_oncall"], after=timedelta(minutes=15)),
        RuleConfig(
            name="cert-expiring", on=["cert_expiring"], to=["it_oncall"], days=14, working_hours_only=True
        ),
        RuleConfig(name="sync-failing", on=["sync_failing"], to=["it_oncall"], after=timedelta(minutes=30)),
    ]
