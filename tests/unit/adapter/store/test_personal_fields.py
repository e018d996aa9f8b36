"""The one list of personal fields agrees with the store: every encrypted column is on it."""

from __future__ import annotations

import pytest

from adapter.apply import SOURCES
from adapter.audit import Actor, record_audit
from adapter.store.models import Base, EncryptedToken
from adapter.store.personal_fields import PERSONAL_FIELDS

# Columns holding a whole source document (quarantined records): the logs redact it as a body.
WHOLE_DOCUMENTS = {"payload"}
# KKI's spelling of the holder's identity, stored next to SISDMK's.
KKI_PREFIX = "kki_"


def test_every_encrypted_column_is_a_personal_field() -> None:
    encrypted = {
        column.name.removeprefix(KKI_PREFIX)
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, EncryptedToken)
    }
    assert encrypted - WHOLE_DOCUMENTS
    assert encrypted - WHOLE_DOCUMENTS <= PERSONAL_FIELDS


class NoSession:
    """Any use of the session fails: the entry must be refused before the trail is touched."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"session.{name} used")


def test_audit_entry_naming_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="not personal fields: shoe_size"):
        record_audit(
            NoSession(),  # type: ignore[arg-type]
            Actor("system", "test"),
            "healthworker.read",
            "health_worker",
            fields=("nik", "shoe_size"),
        )


# The tables whose encrypted columns each source's write fills in full. A KKI record may also
# create its holder's worker row, with the identity fields only (which the models cannot tell):
# not checked here.
WRITTEN_TABLES = {
    "sisdmk": ("health_workers", "employments", "educations"),
    "kki": ("registrations",),
}


@pytest.mark.parametrize("system", sorted(WRITTEN_TABLES))
def test_a_writes_audit_entry_names_every_personal_field_it_writes(system: str) -> None:
    written = {
        column.name.removeprefix(KKI_PREFIX)
        for name in WRITTEN_TABLES[system]
        for column in Base.metadata.tables[name].columns
        if isinstance(column.type, EncryptedToken)
    }
    assert written <= set(SOURCES[system].personal_fields)
