"""Value types shared by the core, the probes and the alert channels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["FailureReason", "Health", "ProbeOutcome"]


class Health(StrEnum):
    """The state of a monitored target, after failure/success thresholds are applied."""

    UNKNOWN = "unknown"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


class FailureReason(StrEnum):
    """Why a probe failed or was degraded: a short, bounded vocabulary usable as a metric label."""

    TIMEOUT = "timeout"
    REFUSED = "refused"
    DNS = "dns"
    TLS = "tls"
    CERT_EXPIRING = "cert_expiring"
    STATUS = "status"
    BODY_MISMATCH = "body_mismatch"
    SLOW = "slow"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """What one probe run found. Probes return this and never raise into the scheduler.

    `success` follows blackbox_exporter's probe_success. A successful probe may still be
    `degraded` (slow, certificate expiring soon); `reason` then says why. The scheduler measures
    the probe's wall-clock duration itself.
    """

    success: bool
    degraded: bool = False
    reason: FailureReason | None = None
    detail: str = ""
    status_code: int | None = None
    # Seconds per phase: dns, connect, tls, processing, transfer (http); connect, tls (tcp).
    phases: Mapping[str, float] = field(default_factory=dict)
    # Epoch seconds of the earliest notAfter among the peer's certificates, when TLS was used.
    cert_expiry: float | None = None

    @property
    def result(self) -> str:
        """The `result` label of tthc_probes_total: success, degraded or failure."""
        if not self.success:
            return "failure"
        return "degraded" if self.degraded else "success"
