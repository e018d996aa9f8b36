"""A request body is JSON as RFC 8259 defines it: Python's parser also takes NaN and Infinity,
which pass every minimum and maximum (no comparison with NaN is true)."""

from __future__ import annotations

import pytest

from adapter.api.spec import RequestChecker
from adapter.errors import AdapterError

NIK = "3171014509870001"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_constant_json_has_not_is_a_400_naming_it(constant: str) -> None:
    body = f'{{"nik": "{NIK}", "limit": {constant}}}'.encode()
    with pytest.raises(AdapterError) as caught:
        RequestChecker().body("searchHealthWorkersByNik", body)
    assert caught.value.reason == "json"
    assert caught.value.message == f"the body is not valid JSON: {constant} is not a JSON number"
    assert NIK not in caught.value.message
