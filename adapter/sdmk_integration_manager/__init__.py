"""The lifecycle of each connection to an external system: enabled, healthy, degraded, down."""

from adapter.sdmk_integration_manager.connections import (
    DOWN_AFTER,
    ConnectionDisabled,
    ConnectionState,
    breaker_state_of,
    connection_state,
    enabled_switches,
    list_connections,
    record_failure,
    record_outcome,
    record_success,
    set_enabled,
)

__all__ = [
    "DOWN_AFTER",
    "ConnectionDisabled",
    "ConnectionState",
    "breaker_state_of",
    "connection_state",
    "enabled_switches",
    "list_connections",
    "record_failure",
    "record_outcome",
    "record_success",
    "set_enabled",
]
