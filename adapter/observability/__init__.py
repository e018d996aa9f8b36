"""Metrics, tracing, structured logs and the audit trail."""
