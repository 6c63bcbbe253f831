"""Why a record is refused: the bounded reasons, the exception that carries one, and its message.

A refused record is skipped and counted by reason (`SyncBatch.rejected`); the rest of the batch goes
on. Messages quote values whole or not at all (`quoted_value`), so the log's scrubbing of secrets still
recognises them, and never carry personal data.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["RejectReason", "Rejected", "describe", "quoted_value"]


class RejectReason:
    """The bounded vocabulary of `SyncBatch.rejected` keys."""

    NO_CODE: Final = "no_code"
    NO_DUE_DATE: Final = "no_due_date"
    BAD_DATE: Final = "bad_date"
    DUE_BEFORE_RECEIVED: Final = "due_before_received"
    UNKNOWN_STATUS: Final = "unknown_status"
    # Submitted online but not yet received at the desk: no clock runs yet, and it is not an error.
    NOT_RECEIVED: Final = "not_received"


class Rejected(Exception):
    """One record cannot be used; the rest of the batch goes on. `message` never holds personal data."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.reason = reason
        self.field = field


def quoted_value(value: Any) -> str:
    """The value as the error quotes it: whole, or only its length when long. A cut excerpt would defeat
    the log's scrubbing of secrets, which masks whole values (a reply echoing `Basic <credentials>` in a
    date field showed half the password)."""
    if isinstance(value, str) and len(value) > 40:
        return f"a text of {len(value)} characters"
    return repr(value)


def describe(index: int, code: str, exc: Rejected) -> str:
    """`record 17 (000.00.12.H12-261128-0001): due_at: cannot parse ...` (index is 1-based)."""
    where = f"record {index + 1}" + (f" ({code})" if code else "")
    return f"{where}: {exc}"
