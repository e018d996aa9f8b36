"""OIDC resource server: discovery, a JWKS cache with rotation, access-token validation, scopes.

Services never import Flask from here; `adapter.auth.web` is the one module that does.
"""

from adapter.auth.bearer import bearer_token
from adapter.auth.client_credentials import ClientCredentialsToken
from adapter.auth.errors import (
    AuthError,
    ClientCredentialsError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    KeySetUnavailableError,
    MissingTokenError,
    ProviderError,
)
from adapter.auth.principal import Principal
from adapter.auth.tokens import AccessTokenValidator, TokenValidator

__all__ = [
    "AccessTokenValidator",
    "AuthError",
    "ClientCredentialsError",
    "ClientCredentialsToken",
    "InsufficientScopeError",
    "InvalidRequestError",
    "InvalidTokenError",
    "KeySetUnavailableError",
    "MissingTokenError",
    "Principal",
    "ProviderError",
    "TokenValidator",
    "bearer_token",
]
