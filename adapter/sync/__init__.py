"""Batch sync of KKI and SISDMK into the store (docs/architecture.md, data flow 1)."""

from adapter.sync.service import SyncProgress, SyncRunResult, sync_system

__all__ = ["SyncProgress", "SyncRunResult", "sync_system"]
