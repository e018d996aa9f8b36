"""The engine both mocks share: runtime state, admin API, faults, webhooks and the listener."""

from openapi_schemas import ignore_connexion_import_warnings

# Before any module of this package imports connexion.
ignore_connexion_import_warnings()
