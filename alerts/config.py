"""The `alerts:` section of the config: channels, directory, rules, quiet hours, digest, templates, delivery.

Cross-references are checked here, each error at its YAML path: a rule or person naming an unknown
channel, a ZNS template parameter that no alert fills, a template override with an unknown field.
"""

from __future__ import annotations

from datetime import time, timedelta

from pydantic import Field, field_validator, model_validator

from alerts.channels import CHANNEL_TYPES, ChannelConfig
from alerts.directory import DirectoryConfig, raise_at
from alerts.model import AlertKind
from alerts.outbox import CLAIM_LEASE
from alerts.rules import RuleConfig, default_rules
from alerts.templates import GROUP_TEMPLATES, TEMPLATE_PARAMS, validate_template
from monitor.calendar import ClockTime
from monitor.configtypes import Duration, PositiveDuration, StrictModel, register_union_tags

__all__ = ["AlertsConfig", "DeliveryConfig", "DigestConfig", "QuietHoursConfig", "clock_time"]

register_union_tags(*CHANNEL_TYPES)

_KINDS = frozenset(kind.value for kind in AlertKind)
# Fields of the message itself that a ZNS template parameter may name besides template_params.
_MESSAGE_FIELDS = ("alert_id", "kind", "person_id", "text")
_MIN_CLAIM_LEASE = timedelta(seconds=1)


def clock_time(value: str) -> time:
    """`07:30` as a time; `24:00` is the end of the day."""
    hours, minutes = (int(part) for part in value.split(":"))
    return time.max if hours == 24 else time(hours, minutes)


class QuietHoursConfig(StrictModel):
    """Local times (config timezone) between which only critical alerts go out; may span midnight."""

    start: ClockTime = "21:00"
    end: ClockTime = "06:30"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursConfig:
        if self.start == self.end:
            raise ValueError("quiet hours start and end must differ (omit the section to disable)")
        return self


class DigestConfig(StrictModel):
    """The morning digest of rules with `digest: true`."""

    at: ClockTime = "07:30"
    # The digest lists the count and at most this many dossier codes.
    max_codes: int = Field(default=10, ge=1, le=50)
    # On days off the items wait for the next working day's digest.
    working_days_only: bool = True


class DeliveryConfig(StrictModel):
    """`alerts.delivery:` in the config."""

    # An alert not delivered this long after it became sendable is marked failed.
    max_age: PositiveDuration = timedelta(hours=24)
    # Transient failures on one channel before the alert moves to the next channel of its plan.
    fallback_after: int = Field(default=3, ge=1, le=100)
    backoff_base: PositiveDuration = timedelta(seconds=5)
    backoff_max: PositiveDuration = timedelta(minutes=10)
    # Transient failures of distinct attempts in a row (any alert; sends in flight together count once)
    # that open a channel's circuit. It opens for backoff_base first, doubling per failed trial, at most
    # circuit_cooldown. A 429 only pauses the channel for its Retry-After (at most backoff_max).
    circuit_failures: int = Field(default=5, ge=1, le=1000)
    circuit_cooldown: PositiveDuration = timedelta(seconds=60)
    # How long a channel that refused our credentials or quota is left alone.
    unavailable_cooldown: PositiveDuration = timedelta(minutes=15)
    poll_interval: PositiveDuration = timedelta(seconds=5)
    # In-flight cap for a channel object that has no `config.concurrency` of its own.
    default_concurrency: int = Field(default=4, ge=1, le=256)
    shutdown_grace: Duration = timedelta(seconds=10)
    # Replicas on PostgreSQL: how long a claimed alert stays with the member sending it without a
    # renewal (renewed every third of it), so how long a dead member's claims wait before another
    # member sends them. Below a second the renewals would be most of the outbox's transactions.
    claim_lease: PositiveDuration = CLAIM_LEASE

    @field_validator("claim_lease")
    @classmethod
    def _lease_long_enough(cls, value: timedelta) -> timedelta:
        if value < _MIN_CLAIM_LEASE:
            raise ValueError("must be at least 1s (claims are renewed every claim_lease/3)")
        return value


class AlertsConfig(StrictModel):
    """`alerts:` everything that decides who gets which alert, and how it reads."""

    channels: list[ChannelConfig] = Field(default_factory=list)
    directory: DirectoryConfig = DirectoryConfig()
    rules: list[RuleConfig] = Field(default_factory=default_rules)
    # null = no quiet hours.
    quiet_hours: QuietHoursConfig | None = QuietHoursConfig()
    digest: DigestConfig = DigestConfig()
    # alert kind (or a GROUP_TEMPLATES name, e.g. target_down_group) → template text overriding the default.
    templates: dict[str, str] = Field(default_factory=dict)
    # At start-up, alerts of crossings and incidents this recent are re-derived (must stay shorter than
    # the outbox keeps delivered alerts, or old ones would be sent again).
    rederive_window: PositiveDuration = timedelta(days=2)
    # How often repeats, "longer than" timers and the digest are checked.
    tick_interval: PositiveDuration = timedelta(seconds=30)
    # Retries, fallback, circuit breakers and the maximum age of an alert in the outbox.
    delivery: DeliveryConfig = DeliveryConfig()

    @model_validator(mode="after")
    def _consistent(self) -> AlertsConfig:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        names: set[str] = set()
        for index, channel in enumerate(self.channels):
            if channel.name in names:
                problems.append((("channels", index, "name"), f"duplicate channel name {channel.name!r}"))
            names.add(channel.name)
            problems.extend(_zns_problems(index, channel))
        for index, person in enumerate(self.directory.people):
            for position, name in enumerate(person.channels):
                if name not in names:
                    problems.append(
                        (("directory", "people", index, "channels", position), f"unknown channel {name!r}")
                    )
        rule_names: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.name in rule_names:
                problems.append((("rules", index, "name"), f"duplicate rule name {rule.name!r}"))
            rule_names.add(rule.name)
            for position, name in enumerate(rule.channels):
                if name not in names:
                    problems.append((("rules", index, "channels", position), f"unknown channel {name!r}"))
        for kind, text in self.templates.items():
            if kind in GROUP_TEMPLATES:
                try:
                    validate_template(kind, text)
                except ValueError as exc:
                    problems.append((("templates", kind), str(exc)))
                continue
            if kind not in _KINDS:
                expected = ", ".join([*(member.value for member in AlertKind), *GROUP_TEMPLATES])
                problems.append(
                    (("templates", kind), f"unknown alert kind {kind!r} (expected one of {expected})")
                )
                continue
            try:
                validate_template(AlertKind(kind), text)
            except ValueError as exc:
                problems.append((("templates", kind), str(exc)))
        raise_at(problems)
        return self

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(channel.name for channel in self.channels)


def _zns_problems(index: int, channel: object) -> list[tuple[tuple[str | int, ...], str]]:
    """A ZNS template parameter naming a field no alert of that kind fills would fail at send time."""
    templates = getattr(channel, "templates", None)
    if getattr(channel, "type", None) != "zalo_zns" or not templates:
        return []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for kind, template in templates.items():
        if kind not in _KINDS:
            problems.append((("channels", index, "templates", kind), f"unknown alert kind {kind!r}"))
            continue
        allowed = (*TEMPLATE_PARAMS[AlertKind(kind)], *_MESSAGE_FIELDS)
        for param, source in template.params.items():
            if source not in allowed:
                problems.append(
                    (
                        ("channels", index, "templates", kind, "params", param),
                        f"unknown field {source!r} for {kind} (fields: {', '.join(allowed)})",
                    )
                )
    return problems
