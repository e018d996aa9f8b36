"""The audit trail: who did what to which personal data (`trail`), who acts (`actors`), the
sealer that chains the pending entries (`seal`), the chain's anchors kept outside the database
(`anchors`) and its verification (`verify`)."""

from adapter.audit.actors import CLI_CLIENT, SYSTEM_SYNC, WORKER, Actor, command_line_operator
from adapter.audit.anchors import Anchor, AnchorError, read_anchors
from adapter.audit.seal import (
    Sealer,
    SealingBlocked,
    SealResult,
    pending_count,
    seal_all,
    seal_pending,
)
from adapter.audit.trail import (
    AuditKeysMissing,
    audit_keys,
    entry_hash,
    entry_mac,
    nik_reference,
    record_audit,
    record_audit_alone,
    seal_hash,
    str_reference,
)
from adapter.audit.verify import ChainReport, verify_chain

__all__ = [
    "CLI_CLIENT",
    "SYSTEM_SYNC",
    "WORKER",
    "Actor",
    "Anchor",
    "AnchorError",
    "AuditKeysMissing",
    "ChainReport",
    "SealResult",
    "Sealer",
    "SealingBlocked",
    "audit_keys",
    "command_line_operator",
    "entry_hash",
    "entry_mac",
    "nik_reference",
    "pending_count",
    "read_anchors",
    "record_audit",
    "record_audit_alone",
    "seal_all",
    "seal_hash",
    "seal_pending",
    "str_reference",
    "verify_chain",
]
