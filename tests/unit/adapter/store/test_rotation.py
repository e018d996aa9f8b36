"""Key rotation without a database: which columns it finds, and its argument checks."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, Uuid, create_engine

from adapter.store.crypto import FieldCipher, Key, KeyRing
from adapter.store.models import Base, EncryptedToken
from adapter.store.rotation import encrypted_tables, rotate_keys


def _mapped_encrypted_columns() -> set[tuple[str, str]]:
    """Every EncryptedToken attribute of every mapped class, found through the ORM instead."""
    found: set[tuple[str, str]] = set()
    for mapper in Base.registry.mappers:
        for attribute in mapper.column_attrs:
            for column in attribute.columns:
                if isinstance(column.type, EncryptedToken):
                    found.add((str(column.table.name), str(column.name)))
    return found


def test_encrypted_tables_finds_every_encrypted_token_column() -> None:
    discovered = {
        (spec.name, column.name) for spec in encrypted_tables() for column in spec.columns
    }

    assert discovered == _mapped_encrypted_columns()
    assert {
        ("health_workers", "nik"),
        ("health_workers", "nip"),
        ("registrations", "kki_full_name"),
        ("employments", "nip"),
        ("educations", "ijazah_no"),
        ("quarantine", "payload"),
    } <= discovered


def test_encrypted_tables_use_row_id_as_key() -> None:
    assert {spec.key.name for spec in encrypted_tables()} == {"id"}


def test_encrypted_tables_finds_columns_of_new_table_without_a_list() -> None:
    metadata = MetaData()
    Table("plain", metadata, Column("id", Uuid, primary_key=True), Column("note", Text))
    Table(
        "secrets",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("a", EncryptedToken),
        Column("b", EncryptedToken),
    )

    specs = encrypted_tables(metadata)

    assert [(spec.name, [column.name for column in spec.columns]) for spec in specs] == [
        ("secrets", ["a", "b"])
    ]


def test_encrypted_tables_refuses_table_without_single_column_key() -> None:
    metadata = MetaData()
    Table(
        "pairs",
        metadata,
        Column("a", Integer, primary_key=True),
        Column("b", Integer, primary_key=True),
        Column("token", EncryptedToken),
    )

    with pytest.raises(ValueError, match="single-column primary key"):
        encrypted_tables(metadata)


def test_rotate_keys_refuses_batch_size_below_one() -> None:
    cipher = FieldCipher(KeyRing([Key("k1", bytes(32))]))
    engine = create_engine("sqlite://")

    with pytest.raises(ValueError, match="batch_size"):
        rotate_keys(engine, cipher, batch_size=0)
