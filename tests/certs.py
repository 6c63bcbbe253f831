"""Test certificates: a private CA (trustme) issuing valid, expired and soon-expiring server certificates."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

__all__ = ["LOCAL_NAMES", "ServerCert", "TestCA"]

# Names a certificate must cover for a probe of https://127.0.0.1:<port>/ or https://localhost:<port>/.
LOCAL_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True, slots=True)
class ServerCert:
    """A server certificate ready to serve, with the moment it expires."""

    server_context: ssl.SSLContext
    not_after: datetime

    @property
    def expiry_epoch(self) -> float:
        return self.not_after.timestamp()


class TestCA:
    """A throwaway CA whose PEM is written to `ca_file`, to be given to a probe as `tls.ca_file`."""

    __test__ = False  # a helper, not a pytest test class

    def __init__(self, directory: Path) -> None:
        self._ca = trustme.CA()
        self.ca_file = directory / "test-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(
        self,
        *names: str,
        valid_for: timedelta = timedelta(days=365),
        not_before: timedelta = timedelta(days=30),
    ) -> ServerCert:
        """A certificate for `names` (default: localhost and 127.0.0.1) expiring `valid_for` from now.

        A negative `valid_for` gives an already expired certificate; `not_before` is how long before
        now it became valid. X.509 times have whole seconds, so microseconds are dropped.
        """
        now = datetime.now(UTC).replace(microsecond=0)
        not_after = now + valid_for
        leaf = self._ca.issue_cert(
            *(names or LOCAL_NAMES),
            not_before=now - max(not_before, -valid_for + timedelta(days=1)),
            not_after=not_after,
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        return ServerCert(server_context=context, not_after=not_after)
