"""Certificates minted at run time, so the simulator (and the demo) needs no key files shipped.

Validity is in real wall-clock time, never the simulator's injectable clock: TLS peers verify against the
system time.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "IssuedCertificate",
    "make_ca",
    "make_ca_and_leaf",
    "make_leaf",
    "server_context",
]


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A PEM certificate and its private key; `chain_pem` is the leaf followed by its issuer."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    chain_pem: bytes = b""
    not_before: datetime | None = None
    not_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A self-signed CA able to issue leaf certificates."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    def issue(
        self,
        hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> IssuedCertificate:
        return make_leaf(self, hostnames, not_before=not_before, not_after=not_after)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tthc-monitor simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(
    common_name: str = "tthc-monitor simulator CA",
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertificateAuthority:
    """A self-signed CA, valid from yesterday for ten years unless told otherwise."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_leaf(
    ca: CertificateAuthority,
    hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> IssuedCertificate:
    """A server certificate for `hostnames` (DNS names or IP addresses) signed by `ca`.

    Defaults to valid from yesterday for 90 days; pass a past `not_after` for an expired one.
    """
    now = datetime.now(UTC)
    not_before = not_before or now - timedelta(days=1)
    not_after = not_after or now + timedelta(days=90)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0] if hostnames else "localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    return IssuedCertificate(
        cert_pem=cert_pem,
        key_pem=_key_pem(key),
        chain_pem=cert_pem + ca.cert_pem,
        not_before=not_before,
        not_after=not_after,
    )


def make_ca_and_leaf(
    hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[CertificateAuthority, IssuedCertificate]:
    """A fresh CA and one leaf with the chosen validity (e.g. an already expired one)."""
    ca = make_ca()
    return ca, make_leaf(ca, hostnames, not_before=not_before, not_after=not_after)


def server_context(leaf: IssuedCertificate, directory: Path, name: str = "leaf") -> ssl.SSLContext:
    """A server-side SSLContext for `leaf`.

    The stdlib only loads certificates from files, so the chain and key are written to `directory`
    (owner-only permissions) as `<name>.pem` and `<name>.key`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(leaf.chain_pem or leaf.cert_pem)
    key_path.touch(mode=0o600, exist_ok=True)
    key_path.chmod(0o600)
    key_path.write_bytes(leaf.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context
