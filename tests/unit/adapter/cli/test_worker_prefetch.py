"""`hf-adapter worker` says when BROKER_PREFETCH leaves some of its threads without work."""

from __future__ import annotations

import pytest

from adapter.cli.worker import prefetch_shortfall


@pytest.mark.parametrize(("concurrency", "prefetch"), [(4, 16), (16, 16), (32, 64)])
def test_a_prefetch_at_least_the_threads_says_nothing(concurrency: int, prefetch: int) -> None:
    assert prefetch_shortfall(concurrency, prefetch) is None


def test_a_prefetch_under_the_threads_says_how_many_run_and_what_to_set() -> None:
    assert prefetch_shortfall(32, 16) == (
        "BROKER_PREFETCH is 16, under --concurrency 32: at most 16 events are applied at once; "
        "set BROKER_PREFETCH to 32 or more"
    )
