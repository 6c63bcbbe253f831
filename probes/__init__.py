"""Probers by target type, and `run_probe`, which never lets a probe's exception reach the scheduler."""

from __future__ import annotations

import asyncio

import structlog

from monitor.model import FailureReason, ProbeOutcome
from monitor.targets import HttpTarget, TcpTarget
from probes.base import ProbeContext, Prober
from probes.http import probe_http
from probes.tcp import probe_tcp

__all__ = ["PROBERS", "ProbeContext", "Prober", "probe_http", "probe_tcp", "run_probe"]

_log = structlog.get_logger(__name__)

PROBERS: dict[str, Prober] = {"http": probe_http, "tcp": probe_tcp}  # type: ignore[dict-item]


async def run_probe(target: HttpTarget | TcpTarget, context: ProbeContext) -> ProbeOutcome:
    """Probe `target` with the prober for its type; any unexpected exception becomes reason `error`."""
    prober = PROBERS.get(target.type)
    if prober is None:
        detail = f"no prober for {target.type!r}"
        return ProbeOutcome(success=False, reason=FailureReason.ERROR, detail=detail)
    try:
        return await prober(target, context)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Only the type and where it was raised: an exception's message or locals may carry a URL token
        # or a header value, which must not reach logs or alerts.
        where = _origin(exc)
        _log.error("probe crashed", target=target.name, error=type(exc).__name__, at=where)
        return ProbeOutcome(
            success=False,
            reason=FailureReason.ERROR,
            detail=f"probe crashed: {type(exc).__name__} at {where}",
        )


def _origin(exc: BaseException) -> str:
    traceback = exc.__traceback__
    if traceback is None:
        return "unknown"
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    code = traceback.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{traceback.tb_lineno}"
