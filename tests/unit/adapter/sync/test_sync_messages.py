"""What a failed sync tells the operator, and what a quarantine reason may contain."""

from __future__ import annotations

import uuid

import pytest

from adapter.cli.sync import next_step
from adapter.clients.errors import ContractViolation, UpstreamUnavailable
from adapter.store.repositories import IdentityConflictError
from adapter.sync.service import SyncCounts, SyncRunResult, _describe, _record_reason

NIK = "3171014501900001"


def _failed(error_type: str, pages: int) -> SyncRunResult:
    return SyncRunResult(
        run_id=uuid.uuid4(),
        system="sisdmk",
        mode="incremental",
        status="failed",
        counts=SyncCounts(),
        findings=0,
        pages=pages,
        duration_s=1.0,
        resumed=False,
        error="x",
        error_type=error_type,
    )


def test_a_source_that_is_down_means_retry_later_from_the_next_page() -> None:
    advice = next_step(_failed("UpstreamUnavailable", 3))
    assert "retry later" in advice
    assert "resumes from page 4" in advice


def test_without_a_committed_page_the_run_restarts_from_the_same_checkpoint() -> None:
    assert "same checkpoint" in next_step(_failed("CircuitOpen", 0))


def test_bad_credentials_name_the_variables() -> None:
    assert "SISDMK_CLIENT_SECRET" in next_step(_failed("AuthenticationFailed", 1))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KeyError("nik"), "missing_field: nik"),
        (ValueError(f"Invalid isoformat string: '{NIK}'"), "invalid_value: ValueError"),
        (IdentityConflictError(f"NIK {NIK} taken"), "identity_conflict: IdentityConflictError"),
    ],
)
def test_quarantine_reasons_name_no_value(error: BaseException, expected: str) -> None:
    assert _record_reason(error) == expected
    assert NIK not in _record_reason(error)


def test_run_errors_keep_the_client_message_and_drop_unknown_ones() -> None:
    down = UpstreamUnavailable("503 after 4 attempts", system="KKI", operation="listRegistrations")
    assert _describe(down) == "UpstreamUnavailable: KKI listRegistrations: 503 after 4 attempts"
    broken = ContractViolation("bad page", system="KKI", operation="listRegistrations")
    assert _describe(broken).startswith("ContractViolation: ")
    assert NIK not in _describe(RuntimeError(NIK))
