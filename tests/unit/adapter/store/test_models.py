"""The store's column types and schema conventions, without a database."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.dialects import sqlite

from adapter.store.crypto import FieldCipher, FieldContext, Key, KeyRing
from adapter.store.models import Base, EncryptedToken, UtcDateTime

DIALECT = sqlite.dialect()
WIB = dt.timezone(dt.timedelta(hours=7))


def test_encrypted_token_accepts_field_token() -> None:
    cipher = FieldCipher(KeyRing([Key("k1", bytes(32))]))
    token = cipher.encrypt("3273011203850007", context=FieldContext("t", "c", "r"))

    assert EncryptedToken().process_bind_param(token, DIALECT) == token


@pytest.mark.parametrize("value", ["3273011203850007", "Budi Santoso", "v1.k1.", "v2.k1.abc"])
def test_encrypted_token_refuses_value_when_not_a_token(value: str) -> None:
    with pytest.raises(ValueError, match="not a field token") as raised:
        EncryptedToken().process_bind_param(value, DIALECT)

    assert value not in str(raised.value)


def test_utc_datetime_refuses_naive_value() -> None:
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().process_bind_param(dt.datetime(2026, 1, 1), DIALECT)


def test_utc_datetime_converts_to_utc_when_binding_and_reading() -> None:
    local = dt.datetime(2026, 1, 1, 7, 0, tzinfo=WIB)

    bound = UtcDateTime().process_bind_param(local, DIALECT)
    read = UtcDateTime().process_result_value(dt.datetime(2026, 1, 1), DIALECT)

    assert bound == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert bound is not None
    assert bound.tzinfo == dt.UTC
    assert read == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_every_constraint_and_index_is_named_when_metadata_is_built() -> None:
    names = [
        item.name
        for table in Base.metadata.tables.values()
        for item in (*table.constraints, *table.indexes)
    ]

    assert all(names)
    assert len(names) == len(set(names))


def test_personal_columns_are_encrypted_when_health_worker_is_mapped() -> None:
    columns = Base.metadata.tables["health_workers"].columns
    personal = (
        "nik",
        "full_name",
        "gelar_depan",
        "gelar_belakang",
        "birth_date",
        "birth_place",
        "address",
        "phone",
        "email",
        "ihs_number",
        "nip",
    )

    assert all(isinstance(columns[name].type, EncryptedToken) for name in personal)
