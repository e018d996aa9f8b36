"""The SISDMK mock's issued tokens: bounded however many a client fetches, oldest forgotten
first, without rebuilding the whole table on every issue."""

from __future__ import annotations

import pytest

from mocks.core import runtime as runtime_module
from mocks.core.runtime import MockRuntime, MockSettings
from mocks.sisdmk.system import SisdmkSystem


def test_past_the_bound_the_oldest_tokens_are_forgotten_and_the_newest_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "MAX_LIVE_TOKENS", 5)
    runtime = MockRuntime.build(SisdmkSystem(), MockSettings(size=2, seed=5))
    issued = [runtime.issue_token("c", frozenset())[0] for _ in range(8)]

    assert len(runtime.tokens) == 5
    assert [runtime.token_info(token) is not None for token in issued] == [False] * 3 + [True] * 5


def test_expired_tokens_leave_the_table_as_new_ones_are_issued() -> None:
    runtime = MockRuntime.build(SisdmkSystem(), MockSettings(size=2, seed=5, token_ttl_s=-1))
    for _ in range(50):
        runtime.issue_token("c", frozenset())

    assert len(runtime.tokens) <= 1
