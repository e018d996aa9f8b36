"""A demo step that fails is named, shown FAILED in the summary, and ends the demo with one
line: never a traceback, never a step that vanished with its spinner."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from harness.demo import Demo, StepFailed


def test_a_failing_step_is_named_in_the_summary_and_the_error() -> None:
    out = io.StringIO()
    demo = Demo(Console(file=out, width=200, color_system=None))
    demo.step("start the KKI mock", lambda: "on :8081")

    def broken() -> str:
        return {"data": []}["page"]  # type: ignore[return-value]

    with pytest.raises(StepFailed, match="step 'first sync of KKI' failed: KeyError: 'page'"):
        demo.step("first sync of KKI", broken)

    text = out.getvalue()
    assert "✗ first sync of KKI: KeyError: 'page'" in text
    assert "summary" in text
    assert "FAILED KeyError: 'page'" in text
    assert "ok on :8081" in text


def test_an_error_quoting_markup_is_shown_as_it_is() -> None:
    out = io.StringIO()
    demo = Demo(Console(file=out, width=200, color_system=None))

    def broken() -> str:
        raise RuntimeError("failed at [/app/x.py] line [bold]3")

    with pytest.raises(StepFailed):
        demo.step("start the adapter", broken)

    assert "[/app/x.py] line [bold]3" in out.getvalue()
