"""The engine both mocks share: runtime state, admin API, faults, webhooks and the listener."""
