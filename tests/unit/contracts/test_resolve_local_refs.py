"""`openapi_schemas.resolve_local_refs` against connexion's `resolve_refs`, which it replaces in
the adapter: the same resolved document for every contract, keys kept beside a $ref, bad
references refused."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest

from openapi_schemas import load_yaml, resolve_local_refs

SPECS = Path(__file__).resolve().parents[3] / "contracts" / "openapi"

with warnings.catch_warnings():  # connexion's import warns about starlette's test client
    warnings.simplefilter("ignore")
    from connexion.json_schema import resolve_refs


@pytest.mark.parametrize("spec", sorted(path.name for path in SPECS.glob("*.yaml")))
def test_every_contract_resolves_as_connexion_resolves_it(spec: str) -> None:
    document = load_yaml((SPECS / spec).read_text(encoding="utf-8"))
    before = copy.deepcopy(document)
    ours = resolve_local_refs(document)
    assert ours == resolve_refs(document)
    assert "$ref" not in repr(ours)
    assert document == before, "the input is left as it was"


def test_a_reference_takes_the_component_and_keeps_its_own_keys() -> None:
    document = {
        "components": {"schemas": {"Id": {"type": "string", "pattern": "^[0-9]+$"}}},
        "paths": {"/a": {"x": {"$ref": "#/components/schemas/Id"}}},
        "also": [{"$ref": "#/components/schemas/Id", "description": "kept beside the $ref"}],
        "clash": {"$ref": "#/components/schemas/Id", "pattern": "the component's wins"},
    }
    resolved = resolve_local_refs(document)
    component = resolved["components"]["schemas"]["Id"]
    assert resolved["paths"]["/a"]["x"] == component
    assert resolved["also"][0] == {**component, "description": "kept beside the $ref"}
    assert resolved["clash"] == component, "as connexion: the component's keys win"
    assert resolve_refs(document)["clash"] == component
    document["components"]["schemas"]["Id"]["pattern"] = "changed"
    assert component["pattern"] == "^[0-9]+$", "a copy, not the input's objects"


def test_a_chain_of_references_and_an_escaped_pointer_resolve() -> None:
    document = {
        "defs": {"a/b": {"type": "integer"}, "alias": {"$ref": "#/defs/a~1b"}},
        "use": {"$ref": "#/defs/alias"},
    }
    assert resolve_local_refs(document)["use"] == {"type": "integer"}


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("other.yaml#/components/schemas/X", "not 'other.yaml#/components/schemas/X'"),
        ("https://example.id/s.json", "not 'https://example.id/s.json'"),
    ],
)
def test_a_reference_outside_the_document_is_refused(ref: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_local_refs({"x": {"$ref": ref}})


def test_a_missing_target_names_the_missing_key() -> None:
    with pytest.raises(KeyError, match="Nope"):
        resolve_local_refs({"components": {}, "x": {"$ref": "#/components/Nope"}})
