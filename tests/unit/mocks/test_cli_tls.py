"""`hf-mock --certfile --keyfile --webhook-ca-bundle`: pairs and files checked before start."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mocks.cli import TlsOptionError, build_parser, check_tls_options, main


def parse(*options: str) -> argparse.Namespace:
    return build_parser().parse_args(["kki", "--port", "0", *options])


def test_tls_options_are_optional() -> None:
    check_tls_options(parse())


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    certificate = tmp_path / "mock.pem"
    certificate.write_text("x")
    with pytest.raises(TlsOptionError, match="go together"):
        check_tls_options(parse("--certfile", str(certificate)))


def test_a_missing_ca_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(TlsOptionError, match=r"--webhook-ca-bundle .* no readable file"):
        check_tls_options(parse("--webhook-ca-bundle", str(tmp_path / "absent.pem")))


def test_a_bad_tls_option_stops_start_up_with_status_2(tmp_path: Path) -> None:
    assert main(["kki", "--port", "0", "--keyfile", str(tmp_path / "k.pem")]) == 2
