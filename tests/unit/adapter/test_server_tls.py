"""`hf-adapter serve --certfile --keyfile`: both or neither, readable, and a pair that loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.errors import ConfigurationError
from adapter.server import TlsFiles
from e2e.pki import CertificateAuthority


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.new(tmp_path / "pki", "unit")


def test_no_tls_options_mean_plain_http() -> None:
    assert TlsFiles.from_options(None, None) is None


def test_a_certificate_and_its_key_load(authority: CertificateAuthority) -> None:
    issued = authority.issue("adapter")
    assert TlsFiles.from_options(issued.certfile, issued.keyfile) == TlsFiles(
        issued.certfile, issued.keyfile
    )


def test_one_option_without_the_other_is_refused(authority: CertificateAuthority) -> None:
    issued = authority.issue("adapter")
    with pytest.raises(ConfigurationError, match="go together"):
        TlsFiles.from_options(issued.certfile, None)
    with pytest.raises(ConfigurationError, match="go together"):
        TlsFiles.from_options(None, issued.keyfile)


def test_a_missing_file_is_named(authority: CertificateAuthority, tmp_path: Path) -> None:
    issued = authority.issue("adapter")
    with pytest.raises(ConfigurationError, match=r"--keyfile .*no readable file"):
        TlsFiles.from_options(issued.certfile, tmp_path / "absent.key")


def test_a_key_of_another_certificate_is_refused(authority: CertificateAuthority) -> None:
    first, second = authority.issue("first"), authority.issue("second")
    with pytest.raises(ConfigurationError, match="do not load"):
        TlsFiles.from_options(first.certfile, second.keyfile)
