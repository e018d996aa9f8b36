"""End-to-end tests: the whole stack as real processes over HTTPS (docs/e2e.md)."""
