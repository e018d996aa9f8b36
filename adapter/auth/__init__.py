"""OIDC resource server: discovery, a JWKS cache with rotation, access-token validation, scopes.

Services never import Flask from here; `adapter.auth.web` is the one module that does.
"""
