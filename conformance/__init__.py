"""hf-conformance: checks an implementation of KKI, SISDMK, the SSO realm or the adapter's API
against its contract, the protocols and the domain's rules, and reports what broke."""
