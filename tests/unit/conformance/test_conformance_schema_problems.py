"""`schema_problems`: what a provider's document breaks, said without its values (a finding's
message reaches the reports, where a name would not be masked)."""

from __future__ import annotations

from conformance.spec import schema_problems

SCHEMA = {
    "type": "object",
    "required": ["nik", "full_name"],
    "additionalProperties": False,
    "properties": {
        "nik": {"type": "string", "pattern": "^[0-9]{16}$"},
        "full_name": {"type": "string", "maxLength": 5},
        "status": {"type": "string", "enum": ["AKTIF", "NONAKTIF"]},
        "credits": {"type": "integer", "minimum": 0},
        "birth_date": {"type": "string", "format": "date"},
        "city": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]},
    },
}
PERSON = {
    "nik": "3171 0157 0890 0042",
    "full_name": "Budi Santoso",
    "status": "Siti Aminah",
    "credits": -7,
    "birth_date": "Dewi Lestari",
    "city": "Kota Jakarta Selatan",
    "phone": 1,
}


def test_no_problem_quotes_the_value_it_is_about() -> None:
    problems = schema_problems(SCHEMA, PERSON)
    text = "\n".join(problems)
    assert len(problems) == 7, problems
    for value in ("0157", "Budi", "Santoso", "Siti", "Dewi", "Jakarta", "-7"):
        assert value not in text, (value, problems)


def test_each_problem_names_the_field_and_what_the_contract_asks() -> None:
    problems = set(schema_problems(SCHEMA, PERSON))
    assert "nik: does not match the pattern ^[0-9]{16}$" in problems
    assert "full_name: 12 characters, the contract says at most 5" in problems
    assert "status: not one of AKTIF, NONAKTIF" in problems
    assert "credits: an integer under the contract's minimum 0" in problems
    assert "birth_date: not a valid date" in problems
    assert "city: a string that breaks the contract's anyOf" in problems
    # The provider's own key and the contract's property names are no one's data.
    assert "(body): Additional properties are not allowed ('phone' was unexpected)" in problems
    assert schema_problems(SCHEMA, {"full_name": 5}) == [
        '(body): "nik" is a required property',
        "full_name: an integer, the contract says string",
    ]
