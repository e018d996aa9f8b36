"""One TLS context per CA bundle and process: the clients share it instead of loading the
bundle again for each (about 40 ms of CPU a client)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from adapter.clients.http import tls_context, tls_verification, verify_from
from e2e.pki import CertificateAuthority


def _subjects(context: ssl.SSLContext) -> list[str]:
    return [
        value
        for certificate in context.get_ca_certs()
        for rdn in certificate["subject"]
        for key, value in rdn
        if key == "commonName"
    ]


def test_the_default_context_verifies_and_is_shared() -> None:
    context = tls_verification(True)

    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context is tls_verification(True) is verify_from(None) is tls_context(None)


def test_a_ca_bundle_is_loaded_once_and_trusted(tmp_path: Path) -> None:
    authority = CertificateAuthority.new(tmp_path, "unit-test-root")

    context = verify_from(authority.bundle)

    assert context.verify_mode is ssl.CERT_REQUIRED
    assert _subjects(context) == ["unit-test-root"]
    assert context is tls_verification(str(authority.bundle)) is verify_from(authority.bundle)
    assert context is not tls_context(None)


def test_a_certificate_directory_is_read_as_capath(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()

    context = tls_context(str(directory))

    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context is not tls_context(None)


def test_no_verification_and_a_given_context_pass_through() -> None:
    mine = ssl.create_default_context()

    assert tls_verification(False) is False
    assert tls_verification(mine) is mine


def test_a_bundle_renewed_in_place_is_loaded_again(tmp_path: Path) -> None:
    first = CertificateAuthority.new(tmp_path / "first", "unit-test-first-root")
    second = CertificateAuthority.new(tmp_path / "second", "unit-test-second-root")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(first.bundle.read_bytes())
    os.utime(bundle, ns=(1_000_000_000, 1_000_000_000))
    before = verify_from(bundle)

    bundle.write_bytes(second.bundle.read_bytes())  # a mounted secret, renewed
    os.utime(bundle, ns=(2_000_000_000, 2_000_000_000))
    after = verify_from(bundle)

    assert _subjects(before) == ["unit-test-first-root"]
    assert _subjects(after) == ["unit-test-second-root"]
    assert verify_from(bundle) is after
