"""The public API under ``/api/v1/`` (contracts/openapi/adapter.yaml): views, request checks,
listings for the operators' views, per-request trace ids and metrics."""
