"""A throw-away certificate authority for one test session, made with `cryptography`.

`CertificateAuthority.new(folder, name)` writes the CA's certificate (the bundle clients trust)
and can issue server certificates for 127.0.0.1 and localhost; nothing outlives the folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any run, short enough that a leaked file is soon worthless.
VALIDITY: Final = dt.timedelta(days=2)
# A clock a little behind ours still accepts the certificates.
BACKDATE: Final = dt.timedelta(hours=1)
SERVER_NAMES: Final = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class ServerCertificate:
    """A server's PEM certificate (leaf, then the CA) and its unencrypted PEM key."""

    certfile: Path
    keyfile: Path


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    bundle: Path  # the CA certificate, PEM: what clients verify servers against
    _certificate: x509.Certificate
    _key: ec.EllipticCurvePrivateKey
    _folder: Path

    @classmethod
    def new(cls, folder: Path, name: str) -> CertificateAuthority:
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        bundle = folder / f"{name}-ca.pem"
        bundle.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(name, bundle, certificate, key, folder)

    def issue(self, server: str, names: tuple[str, ...] = SERVER_NAMES) -> ServerCertificate:
        """A certificate for `server` valid for `names` (IP addresses and DNS names)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        alternative: list[x509.GeneralName] = []
        for name in names:
            try:
                alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternative.append(x509.DNSName(name))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server)]))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        certfile = self._folder / f"{server}.pem"
        keyfile = self._folder / f"{server}.key"
        certfile.write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
            + self._certificate.public_bytes(serialization.Encoding.PEM)
        )
        keyfile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        keyfile.chmod(0o600)
        return ServerCertificate(certfile, keyfile)
