"""The one exception tree of alert delivery.

Channels translate every gateway reply and network failure into one of these at the boundary
(`raise X(msg) from exc`), so the outbox decides what to do from the class alone:

    AlertError
    └── ChannelError (.channel, .code)
        ├── TransientError (.retry_after)   retry this channel later
        │   ├── RateLimited                 slow down; honour retry_after
        │   ├── GatewayUnavailable          5xx, connection refused, unreadable reply
        │   └── GatewayTimeout              no reply in time (the message MAY have gone out)
        ├── PermanentError                  this message can never go through this channel:
        │   │                               fall back to the next channel at once
        │   ├── InvalidRecipient            bad phone, blocked number, not a follower
        │   ├── TemplateRejected            unknown template, template data/mismatch
        │   └── ContentRejected             content/brandname refused, cannot fit max_segments
        ├── AuthError (.reauthorization_required)   credentials wrong or expired
        └── QuotaExceeded                   daily quota or balance used up: not retried today

Gateway codes and the class they map to (*unconfirmed* = from secondary sources or guessed; the
fakes in tests/fakes implement the same table):

    ===========  ==========================================  ===================================
    gateway      code                                        class
    ===========  ==========================================  ===================================
    any          HTTP 429 (Retry-After honoured)             RateLimited
    any          HTTP 5xx, connection error, non-JSON reply  GatewayUnavailable
    any          request timeout                             GatewayTimeout
    Zalo OAuth   any error reply to a refresh                AuthError(reauthorization_required)
    Zalo ZNS/OA  HTTP 401, -216, -124 *unconfirmed*          token refreshed, sent again once;
                                                             then AuthError
    Zalo ZNS     -108 invalid phone                          InvalidRecipient
    Zalo ZNS     -114 -118 -119 -139 *unconfirmed*           InvalidRecipient
    Zalo ZNS     -109 -111 -112 -113 template                TemplateRejected
    Zalo ZNS     -133 outside 07:00-22:00 *secondary*        TransientError, retry at 07:00 local
    Zalo ZNS     -144 daily quota, -115 *unconfirmed*        QuotaExceeded
    Zalo ZNS/OA  -101 .. -105 app/secret *unconfirmed*       AuthError (not re-authorisation)
    Zalo ZNS/OA  other negative code                         PermanentError
    Zalo OA      -213 not a follower *unconfirmed*, -230     InvalidRecipient
                 no interaction in 7 days *unconfirmed*
    eSMS         100 accepted, 124 duplicate RequestId       success (receipt.duplicate for 124)
    eSMS         99 blocked, 108 phone format                InvalidRecipient
    eSMS         101 wrong key, 140 IP not whitelisted       AuthError
    eSMS         103 balance                                 QuotaExceeded
    eSMS         104 brandname                               ContentRejected
    eSMS         146 template mismatch                       TemplateRejected
    eSMS         any other code                              TransientError
    SpeedSMS     HTTP 401/403, 007 008 009 *unconfirmed*     AuthError
    SpeedSMS     105 or data.invalidPhone *unconfirmed*      InvalidRecipient
    SpeedSMS     110 113 *unconfirmed*                       ContentRejected
    SpeedSMS     300 balance *unconfirmed*                   QuotaExceeded
    SpeedSMS     500 *unconfirmed*                           GatewayUnavailable
    SpeedSMS     any other code                              PermanentError
    sms_http     401/403 / other 4xx / success unmet         AuthError / PermanentError
    webhook      401/403 / other 4xx                         AuthError / PermanentError
    ===========  ==========================================  ===================================

Messages are short and lowercase and never contain secrets, tokens or full phone numbers (use
`mask_phone`).
"""

from __future__ import annotations

__all__ = [
    "AlertError",
    "AuthError",
    "ChannelError",
    "ContentRejected",
    "GatewayTimeout",
    "GatewayUnavailable",
    "InvalidRecipient",
    "PermanentError",
    "QuotaExceeded",
    "RateLimited",
    "TemplateRejected",
    "TransientError",
    "mask_phone",
]


class AlertError(Exception):
    """Base of every error raised by alert delivery."""


class ChannelError(AlertError):
    """A channel could not deliver a message.

    `channel` is the channel's instance name (filled in by the channel when a lower layer, such as
    the transport, raised without knowing it); `code` is the gateway's own error code, if any.
    """

    def __init__(self, message: str, *, channel: str = "", code: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.channel = channel
        self.code = None if code is None else str(code)

    def __str__(self) -> str:
        prefix = f"{self.channel}: " if self.channel else ""
        suffix = f" (code {self.code})" if self.code is not None else ""
        return f"{prefix}{self.message}{suffix}"


class TransientError(ChannelError):
    """Retry this channel later; `retry_after` (seconds) is the gateway's hint, when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        channel: str = "",
        code: str | int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, channel=channel, code=code)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The gateway asked us to slow down (HTTP 429)."""


class GatewayUnavailable(TransientError):
    """The gateway could not be reached or answered with a server error."""


class GatewayTimeout(TransientError):
    """No reply in time. The gateway may still have sent the message: resend with the same id."""


class PermanentError(ChannelError):
    """This message can never go through this channel: fall back to the next channel at once."""


class InvalidRecipient(PermanentError):
    """The recipient cannot be reached on this channel (bad or blocked phone, not a follower)."""


class TemplateRejected(PermanentError):
    """The gateway refused the template, its data, or the content did not match a registered template."""


class ContentRejected(PermanentError):
    """The gateway refused the content or sender name, or the text cannot be made to fit."""


class AuthError(ChannelError):
    """Credentials are wrong or expired.

    `reauthorization_required` means a person must act (e.g. re-authorise the Zalo app and supply a
    new refresh token); until then every send on this channel fails the same way.
    """

    def __init__(
        self,
        message: str,
        *,
        channel: str = "",
        code: str | int | None = None,
        reauthorization_required: bool = False,
    ) -> None:
        super().__init__(message, channel=channel, code=code)
        self.reauthorization_required = reauthorization_required


class QuotaExceeded(ChannelError):
    """The daily quota or the account balance is used up: do not retry this channel today."""


def mask_phone(phone: str | None) -> str:
    """`84912345678` → `849****678`: enough to tell numbers apart in an error, not enough to call."""
    if not phone:
        return "<none>"
    if len(phone) <= 6:
        return "*" * len(phone)
    return f"{phone[:3]}{'*' * (len(phone) - 6)}{phone[-3:]}"
