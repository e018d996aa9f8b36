"""A real test OpenID Connect provider (oidc-provider, configured from the realm export) per
test module; without Node.js the tests fail with what to install, they are never skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapter.auth.tokens import TokenValidator
from harness.idp import IdpProcess, generate_signing_keys
from tests.integration.adapter.auth.support import AUDIENCE, started


@pytest.fixture(scope="module")
def idp() -> Iterator[IdpProcess]:
    """A provider signing with an RSA key (RS256) and holding an EC key (ES256)."""
    provider = started(IdpProcess(keys=generate_signing_keys(rsa_kids=["rsa-1"], ec_kids=["ec-1"])))
    try:
        yield provider
    finally:
        provider.close()


@pytest.fixture
def validator(idp: IdpProcess) -> TokenValidator:
    """A fresh validator (empty key cache) that finds its keys through discovery."""
    return TokenValidator.for_issuer(idp.issuer, AUDIENCE)
