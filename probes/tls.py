"""TLS helpers shared by the HTTP and TCP probes: contexts, peer certificates, expiry, error details."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509

__all__ = [
    "build_ssl_context",
    "cert_expiry_problem",
    "earliest_expiry",
    "handshake_listener",
    "peer_certificates",
    "tls_error_detail",
]

# aiohttp opens the TCP connection and runs the TLS handshake inside one traced step. asyncio calls
# `SSLContext.wrap_bio` exactly when the TCP connection is up and the handshake begins, so a context
# that stamps that moment lets the HTTP probe split connect from tls. The listener is per task
# (a ContextVar) because one cached context serves many concurrent probes.
_handshake_listener: ContextVar[Callable[[float], None] | None] = ContextVar(
    "tthc_tls_handshake_listener", default=None
)


class _TimedSSLContext(ssl.SSLContext):
    """An SSLContext that tells the current probe when its TLS handshake starts."""

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        listener = _handshake_listener.get()
        if listener is not None:
            listener(time.perf_counter())
        return super().wrap_bio(*args, **kwargs)


@contextmanager
def handshake_listener(callback: Callable[[float], None]) -> Iterator[None]:
    """Within this block, TLS handshakes started by this task report their start time to `callback`."""
    token = _handshake_listener.set(callback)
    try:
        yield
    finally:
        _handshake_listener.reset(token)


def build_ssl_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """A client context. `ca_file` is trusted IN ADDITION to the system CAs.

    Additional rather than instead: a Vietnamese government CA missing from the system bundle is the
    usual reason for `ca_file`, and the same office often also runs sites with public certificates.
    With verify off the handshake accepts anything, but the peer certificate is still read for expiry.
    """
    context = _TimedSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if ca_file is not None:
            context.load_verify_locations(cafile=str(ca_file))
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def peer_certificates(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[bytes, ...]:
    """DER certificates the peer presented: the verified chain when Python exposes it (3.13+), else the leaf.

    `getpeercert(binary_form=True)` returns the leaf even when verification is off, which the decoded
    form does not.
    """
    if ssl_object is None:
        return ()
    get_chain = getattr(ssl_object, "get_verified_chain", None)
    if get_chain is not None:
        try:
            chain = get_chain() or ()
        except (ssl.SSLError, ValueError):
            chain = ()
        ders = tuple(
            cert if isinstance(cert, bytes) else cert.public_bytes(ssl.ENCODING_DER)  # type: ignore[attr-defined]
            for cert in chain
        )
        if ders:
            return ders
    try:
        leaf = ssl_object.getpeercert(binary_form=True)
    except (ssl.SSLError, ValueError):
        return ()
    return (leaf,) if leaf else ()


# The same few certificates come back on every probe; parsing is cheap but not free at 100 probes/s.
@lru_cache(maxsize=512)
def _not_after(der: bytes) -> float | None:
    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    except ValueError:
        return None


def earliest_expiry(ders: tuple[bytes, ...]) -> float | None:
    """Epoch seconds of the earliest notAfter among `ders`, None when none could be read."""
    expiries = [expiry for der in ders if (expiry := _not_after(der)) is not None]
    return min(expiries) if expiries else None


def cert_expiry_problem(expiry: float | None, min_cert_days: int, now: float) -> str | None:
    """A short detail when the certificate expires within `min_cert_days` (0 = never), else None."""
    if expiry is None or min_cert_days <= 0:
        return None
    days_left = (expiry - now) / 86400
    if days_left >= min_cert_days:
        return None
    if days_left < 0:
        return f"certificate expired {-days_left:.1f} days ago"
    return f"certificate expires in {days_left:.1f} days (< {min_cert_days})"


def tls_error_detail(exc: BaseException) -> str:
    """A short, secret-free description of a handshake or verification failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message or exc.reason or 'unknown'}"
    if isinstance(exc, ssl.SSLError):
        return f"tls error: {exc.reason or type(exc).__name__}".lower()
    return f"tls error: {type(exc).__name__}"
