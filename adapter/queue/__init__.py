"""Broker wiring (RabbitMQ, or the embedded database queue), retries, dead letters, the worker."""
