"""Public-API bearer tokens: verified (HS256 or RS256, never both) and, for development, issued."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wabapool.domain.json_types import JSONObject
from wabapool.security.errors import AuthenticationError
from wabapool.security.roles import Principal, Role

# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
HS256_SECRET_MIN_BYTES = 32
# NIST SP 800-131A: RSA keys shorter than 2048 bits are no longer acceptable for signatures.
RSA_KEY_MIN_BITS = 2048
# A bearer token is a few hundred bytes; refuse anything that is clearly not one before parsing it.
TOKEN_MAX_LENGTH = 8192
# Development tokens are for development: a day is enough, a month is the ceiling.
TOKEN_TTL_MAX_SECONDS = 30 * 24 * 3600
# company_id is a BIGINT in storage.
COMPANY_ID_MAX = 2**63 - 1

_COMPANY_ID_TEXT = re.compile(r"[1-9][0-9]{0,18}")


def _unescape_pem(pem: str) -> str:
    # PEM keys passed through environment variables often arrive with literal "\n".
    return pem.replace("\\n", "\n") if "\n" not in pem else pem


def _hs256_secret(secret: str) -> bytes:
    key = secret.encode()
    if len(key) < HS256_SECRET_MIN_BYTES:
        raise ValueError(f"the HS256 secret must be at least {HS256_SECRET_MIN_BYTES} bytes")
    return key


def _rsa_public_key(pem: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(_unescape_pem(pem).encode())
    except ValueError as exc:
        raise ValueError("the RS256 public key is not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the RS256 public key is not an RSA key")
    if key.key_size < RSA_KEY_MIN_BITS:
        raise ValueError(f"the RS256 public key must be at least {RSA_KEY_MIN_BITS} bits")
    return key


def _rsa_private_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(_unescape_pem(pem).encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("the RS256 private key is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the RS256 private key is not an RSA key")
    if key.key_size < RSA_KEY_MIN_BITS:
        raise ValueError(f"the RS256 private key must be at least {RSA_KEY_MIN_BITS} bits")
    return key


def _one_key(first: object | None, second: object | None, names: str) -> None:
    if (first is None) == (second is None):
        raise ValueError(f"configure exactly one of {names}")


def _company_id_claim(value: object) -> int:
    if isinstance(value, bool):
        raise AuthenticationError("token company_id claim is not a positive integer")
    if isinstance(value, str) and _COMPANY_ID_TEXT.fullmatch(value):
        value = int(value)
    if not isinstance(value, int) or not 0 < value <= COMPANY_ID_MAX:
        raise AuthenticationError("token company_id claim is not a positive integer")
    return value


def _role_claim(value: object) -> Role:
    if isinstance(value, str):
        try:
            return Role(value)
        except ValueError:
            pass
    raise AuthenticationError("token role claim is not a known role")


# PyJWT's exceptions, translated once, most specific first (several are subclasses of others).
_TOKEN_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.DecodeError, "token is malformed"),
)


def _token_error_message(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token is missing the {exc.claim} claim"
    for error_type, message in _TOKEN_ERRORS:
        if isinstance(exc, error_type):
            return message
    return "token is invalid"


class TokenVerifier:
    """Verifies public-API bearer tokens: HS256 with a secret or RS256 with a public key, never both."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        audience: str | None = None,
        leeway_seconds: int = 0,
    ) -> None:
        _one_key(secret, public_key, "a JWT secret (HS256) or a JWT public key (RS256)")
        if not 0 <= leeway_seconds <= 300:
            raise ValueError("leeway_seconds must be between 0 and 300")
        self._key: bytes | rsa.RSAPublicKey
        if secret is not None:
            self._key, self._algorithm = _hs256_secret(secret), "HS256"
        else:
            self._key, self._algorithm = _rsa_public_key(public_key or ""), "RS256"
        self._audience = audience
        self._leeway_seconds = leeway_seconds

    @property
    def algorithm(self) -> str:
        return self._algorithm

    def verify(self, token: str | None) -> Principal:
        """The principal a valid token names; AuthenticationError for anything else."""
        if not token:
            raise AuthenticationError("bearer token is missing")
        if len(token) > TOKEN_MAX_LENGTH:
            raise AuthenticationError("token is too long")
        try:
            claims: JSONObject = jwt.decode(
                token,
                self._key,
                # One algorithm, fixed by configuration: "none" and algorithm confusion are refused here.
                algorithms=[self._algorithm],
                audience=self._audience,
                leeway=self._leeway_seconds,
                options={
                    "require": ["exp", "company_id", "role"],
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(_token_error_message(exc)) from exc
        subject = claims.get("sub")
        return Principal(
            company_id=_company_id_claim(claims["company_id"]),
            role=_role_claim(claims["role"]),
            subject=subject if isinstance(subject, str) else None,
        )

    def __repr__(self) -> str:
        return f"TokenVerifier(algorithm={self._algorithm!r}, audience={self._audience!r})"


def issue_token(
    *,
    company_id: int,
    role: Role | str,
    secret: str | None = None,
    private_key: str | None = None,
    ttl_seconds: int = 3600,
    audience: str | None = None,
    subject: str | None = None,
    now: datetime | None = None,
) -> str:
    """A signed token for development and tests (`wabapool token`): HS256 with a secret, RS256 with a private key."""
    _one_key(secret, private_key, "secret (HS256) or private_key (RS256)")
    if isinstance(company_id, bool) or not isinstance(company_id, int) or not 0 < company_id <= COMPANY_ID_MAX:
        raise ValueError("company_id must be a positive integer")
    if not 0 < ttl_seconds <= TOKEN_TTL_MAX_SECONDS:
        raise ValueError(f"ttl_seconds must be between 1 and {TOKEN_TTL_MAX_SECONDS}")
    issued_at = now or datetime.now(UTC)
    if issued_at.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    claims: dict[str, object] = {
        "company_id": company_id,
        "role": Role(role).value,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + timedelta(seconds=ttl_seconds),
    }
    if audience is not None:
        claims["aud"] = audience
    if subject is not None:
        claims["sub"] = subject
    if secret is not None:
        return jwt.encode(claims, _hs256_secret(secret), algorithm="HS256")
    return jwt.encode(claims, _rsa_private_key(private_key or ""), algorithm="RS256")
