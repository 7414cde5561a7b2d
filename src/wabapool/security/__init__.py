"""Who is calling, and what they may see: service API keys, bearer tokens, roles (masking: `wabapool.masking`).

Framework-free: the API layer turns `AuthenticationError` into a 401 and a
`False` from `allowed` or `Caller.may` into a 403. Errors raised here carry
messages that are safe to show the caller; they never contain a key, a secret
or a token.

    AuthenticationError   a credential is missing, malformed, forged, expired or refused
"""

from wabapool.security.api_keys import API_KEY_MIN_LENGTH, ApiKeyRing, Caller, Scope
from wabapool.security.errors import AuthenticationError
from wabapool.security.roles import Permission, Principal, Role, allowed
from wabapool.security.tokens import (
    COMPANY_ID_MAX,
    HS256_SECRET_MIN_BYTES,
    RSA_KEY_MIN_BITS,
    TOKEN_MAX_LENGTH,
    TOKEN_TTL_MAX_SECONDS,
    TokenVerifier,
    issue_token,
)

__all__ = [
    "API_KEY_MIN_LENGTH",
    "COMPANY_ID_MAX",
    "HS256_SECRET_MIN_BYTES",
    "RSA_KEY_MIN_BITS",
    "TOKEN_MAX_LENGTH",
    "TOKEN_TTL_MAX_SECONDS",
    "ApiKeyRing",
    "AuthenticationError",
    "Caller",
    "Permission",
    "Principal",
    "Role",
    "Scope",
    "TokenVerifier",
    "allowed",
    "issue_token",
]
