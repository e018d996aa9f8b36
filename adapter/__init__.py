"""The HealthForce integration adapter: keeps a local, encrypted copy of the health workforce
in step with KKI and SISDMK and serves it behind SSO (see docs/architecture.md)."""
