"""What the token tests share: the adapter's audience and starting the test provider."""

from __future__ import annotations

import pytest

from harness.idp import IdpProcess, IdpUnavailable

AUDIENCE = "hf-adapter"


def started(idp: IdpProcess) -> IdpProcess:
    try:
        return idp.start()
    except IdpUnavailable as exc:
        idp.close()
        pytest.fail(str(exc), pytrace=False)
