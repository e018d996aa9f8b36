"""The advice `db upgrade` and `db grant` give for tables and functions with mixed owners."""

from __future__ import annotations

from adapter.store.database import Ownership

_ADVICE_ENDS = " (docs/operations.md, Changing the tables' owner)"


def test_give_all_alters_the_owner_of_what_the_bootstrap_superuser_owns() -> None:
    # REASSIGN OWNED BY postgres fails: "cannot reassign ownership of objects owned by role
    # postgres because they are required by the database system".
    owned = Ownership(
        role="hf_new",
        owners={
            "audit_events": "hf_new",
            "audit_events_seal()": "postgres",
            "facilities": "postgres",
            "registrations": "hf_old",
        },
        not_owned={
            "audit_events_seal()": "postgres",
            "facilities": "postgres",
            "registrations": "hf_old",
        },
        bootstrap_superuser="postgres",
    )

    advice = owned.give_all()

    assert advice.endswith(
        ': REASSIGN OWNED BY "hf_old" TO "hf_new"; '
        'ALTER FUNCTION "audit_events_seal"() OWNER TO "hf_new"; '
        'ALTER TABLE "facilities" OWNER TO "hf_new";' + _ADVICE_ENDS
    )
    assert "bootstrap superuser 'postgres'" in advice
    assert 'OWNED BY "postgres"' not in advice


def test_give_all_reassigns_nothing_when_the_bootstrap_superuser_is_the_only_other_owner() -> None:
    owned = Ownership(
        role="hf_owner",
        owners={"audit_no_truncate()": "postgres", "facilities": "hf_owner"},
        not_owned={"audit_no_truncate()": "postgres"},
        bootstrap_superuser="postgres",
    )

    advice = owned.give_all()

    assert "REASSIGN OWNED BY" not in advice
    assert advice.endswith(
        ': ALTER FUNCTION "audit_no_truncate"() OWNER TO "hf_owner";' + _ADVICE_ENDS
    )


def test_give_all_quotes_the_role_names_it_advises_to_reassign() -> None:
    owned = Ownership(
        role='Owner "A"',
        owners={"facilities": "Old-Owner", "registrations": 'Owner "A"', "audit_events": "b"},
        not_owned={"facilities": "Old-Owner", "audit_events": "b"},
        bootstrap_superuser="postgres",
    )

    advice = owned.give_all()

    assert advice.endswith(': REASSIGN OWNED BY "Old-Owner", "b" TO "Owner ""A""";' + _ADVICE_ENDS)


def test_give_all_gives_to_the_bootstrap_superuser_by_reassigning_to_it() -> None:
    # Reassigning *to* the bootstrap superuser works; only moving its objects away does not.
    owned = Ownership(
        role="hf_app",
        owners={"facilities": "postgres", "registrations": "postgres", "audit_events": "hf_x"},
        not_owned={"facilities": "postgres", "registrations": "postgres", "audit_events": "hf_x"},
        bootstrap_superuser="postgres",
    )

    assert owned.give_all().endswith(': REASSIGN OWNED BY "hf_x" TO "postgres";' + _ADVICE_ENDS)


def test_sole_other_owner_is_the_one_owner_only_when_the_role_owns_nothing() -> None:
    everything = {"facilities": "hf_owner", "audit_events_seal()": "hf_owner"}

    assert Ownership("hf_app", everything, dict(everything)).sole_other_owner() == "hf_owner"
    assert Ownership("hf_app", everything, {"facilities": "hf_owner"}).sole_other_owner() is None
    mixed = {"facilities": "hf_owner", "audit_events_seal()": "hf_old"}
    assert Ownership("hf_app", mixed, dict(mixed)).sole_other_owner() is None
