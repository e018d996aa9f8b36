"""Unknown parameter and field names are echoed in problem details only when they cannot hold a
NIK: a NIK with a letter before it, or a separator, was echoed back in clear."""

from __future__ import annotations

import json

import pytest

from adapter.api.spec import RequestChecker
from adapter.errors import AdapterError

NIK = "3171014509870001"


def _problem(call: object) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        call()  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize(
    "name",
    [
        NIK,
        f"x{NIK}",
        f"nik-{NIK}",
        f"{NIK}_a",
        "a871231b",
        "3171-0145-0987-0001",
        "87.12.31",
        "3171x0145x0987x0001",
    ],
)
def test_an_unknown_query_parameter_holding_a_digit_run_is_not_echoed(name: str) -> None:
    problem = _problem(lambda: RequestChecker().query("listHealthWorkers", {name: ["x"]}))
    assert "unknown query parameter (an unknown field)" in problem.message
    assert name not in problem.message
    assert sum(char.isdigit() for char in problem.message) == 0  # no part of it either


@pytest.mark.parametrize("name", [f"x{NIK}", f"nik.{NIK}"])
def test_an_unknown_body_field_holding_a_digit_run_is_not_echoed(name: str) -> None:
    body = json.dumps({"nik": NIK, name: 1}).encode()
    problem = _problem(lambda: RequestChecker().body("searchHealthWorkersByNik", body))
    assert NIK not in problem.message
    assert name not in problem.message
    assert "(an unknown field): is not a field of this body" in problem.message


def test_a_plain_unknown_name_is_still_named() -> None:
    problem = _problem(lambda: RequestChecker().query("listHealthWorkers", {"sort_by": ["x"]}))
    assert "unknown query parameter sort_by;" in problem.message
