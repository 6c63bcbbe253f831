"""What a config reload (SIGHUP, `POST /api/v1/reload`) changed, or why it changed nothing.

The daemon applies a reload in two phases: first the new file is validated and every new object it
needs (calendars, dossier sources, alert channels) is built while the old ones keep running; only when
all of that succeeded are they swapped in. So a bad config changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.config import Config

__all__ = ["RESTART_ONLY", "ReloadOutcome", "changed_sections"]

# Sections a reload does not apply: it logs (and reports) that a restart is needed.
RESTART_ONLY = ("listen", "store", "replicas", "timezone", "scheduler", "logging")


def changed_sections(old: Config, new: Config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sections a reload applies, sections that need a restart) that differ between two configs."""
    changed = [name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)]
    return (
        tuple(name for name in changed if name not in RESTART_ONLY),
        tuple(name for name in changed if name in RESTART_ONLY),
    )


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """One reload's result: `ok` with what changed, or the errors (each naming where it is)."""

    ok: bool
    changed: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    # Per section, what changed inside it (people, sources, channels by name: never secrets).
    details: Mapping[str, Any] = field(default_factory=dict)
    # The daemon has no config file to read (started from a config object).
    no_file: bool = False
    # The new config was valid but applying it failed half-way (a bug; the log has the details).
    apply_failed: bool = False

    @classmethod
    def failed(
        cls, errors: Sequence[str], *, no_file: bool = False, apply_failed: bool = False
    ) -> ReloadOutcome:
        return cls(ok=False, errors=tuple(errors), no_file=no_file, apply_failed=apply_failed)

    @property
    def http_status(self) -> int:
        """200 applied; 400 nothing to read; 422 the config has errors; 500 applying it failed."""
        if self.ok:
            return 200
        if self.no_file:
            return 400
        return 500 if self.apply_failed else 422

    def to_json(self) -> dict[str, Any]:
        if not self.ok:
            return {"reloaded": False, "errors": list(self.errors)}
        return {
            "reloaded": True,
            "changed": list(self.changed),
            "restart_needed": list(self.restart_needed),
            "details": dict(self.details),
        }
