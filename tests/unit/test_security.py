from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wabapool.security import (
    ApiKeyRing,
    AuthenticationError,
    Permission,
    Principal,
    Role,
    TokenVerifier,
    allowed,
    issue_token,
)

SECRET = "a-development-secret-of-32-bytes!"
OTHER_SECRET = "another-secret-that-is-long-enough"


@pytest.fixture(scope="module")
def rsa_pems() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh 2048-bit key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict[str, object], claims: dict[str, object], hs256_key: bytes | None = None) -> str:
    """A token built without PyJWT, so it can carry what PyJWT refuses to produce."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = b"" if hs256_key is None else hmac.new(hs256_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def valid_claims(**overrides: object) -> dict[str, object]:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, object] = {"company_id": 1001, "role": "admin", "iat": now, "exp": now + 600}
    claims.update(overrides)
    return claims


def refusal(verifier: TokenVerifier, token: str | None) -> str:
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(token)
    return caught.value.message


# --- API keys --------------------------------------------------------------------------------


def test_api_key_ring_names_the_service_whose_key_is_presented() -> None:
    ring = ApiKeyRing.from_spec("sender:sender-key-0123456789, payments:payments-key-0123456789")
    assert ring.authenticate("sender-key-0123456789") == "sender"
    assert ring.authenticate("payments-key-0123456789") == "payments"


def test_api_key_ring_refuses_unknown_empty_and_missing_keys() -> None:
    ring = ApiKeyRing.from_spec("sender:sender-key-0123456789")
    assert ring.authenticate("sender-key-0123456788") is None
    assert ring.authenticate("") is None
    assert ring.authenticate(None) is None


def test_api_key_ring_keeps_only_hashes_and_never_shows_keys() -> None:
    ring = ApiKeyRing.from_spec("sender:sender-key-0123456789")
    stored = repr(vars(ring)) + repr(ring)
    assert "sender-key-0123456789" not in stored
    assert repr(ring) == "ApiKeyRing(services=['sender'])"


def test_api_key_ring_accepts_several_keys_per_service_for_rotation() -> None:
    ring = ApiKeyRing.from_spec("sender:old-key-0123456789abc,sender:new-key-0123456789abc")
    assert ring.authenticate("old-key-0123456789abc") == "sender"
    assert ring.authenticate("new-key-0123456789abc") == "sender"
    assert ring.services == ("sender",)


def test_api_key_ring_keeps_colons_inside_a_key() -> None:
    ring = ApiKeyRing.from_spec("sender:with:colons:0123456789")
    assert ring.authenticate("with:colons:0123456789") == "sender"


def test_api_key_ring_compares_against_every_entry_without_stopping_at_a_match(monkeypatch) -> None:
    ring = ApiKeyRing.from_spec("a:aaaaaaaaaaaaaaaa1,b:bbbbbbbbbbbbbbbb2,c:cccccccccccccccc3")
    calls: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def counting_compare(left: bytes, right: bytes) -> bool:
        calls.append((left, right))
        return real_compare(left, right)

    monkeypatch.setattr("wabapool.security.api_keys.hmac.compare_digest", counting_compare)
    assert ring.authenticate("aaaaaaaaaaaaaaaa1") == "a"
    assert len(calls) == 3
    assert ring.authenticate("nobody-has-this-key") is None
    assert len(calls) == 6
    # Digests of equal length are compared, never the raw (variable-length) keys.
    assert all(len(left) == len(right) == 32 for left, right in calls)


@pytest.mark.parametrize("spec", ["sender", "sender:", ":"])
def test_api_key_ring_refuses_an_entry_that_is_not_service_colon_key(spec: str) -> None:
    with pytest.raises(ValueError, match="is not service:key"):
        ApiKeyRing.from_spec(spec)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (":lonely-key-0123456789", "lonely-key-0123456789"),
        ("sender:tinykey", "tinykey"),
        ("a:same-key-0123456789,b:same-key-0123456789", "same-key-0123456789"),
    ],
)
def test_api_key_ring_refuses_a_bad_key_without_echoing_it(spec: str, key: str) -> None:
    with pytest.raises(ValueError) as caught:
        ApiKeyRing.from_spec(spec)
    assert key not in str(caught.value)


def test_api_key_ring_from_an_empty_spec_authenticates_nobody() -> None:
    assert ApiKeyRing.from_spec("").authenticate("anything-at-all-here") is None


# --- roles --------------------------------------------------------------------------------------

ROLE_TABLE = {
    Permission.VIEW_BILLING_INFO: {"owner", "admin", "supervisor", "agent", "member"},
    Permission.VIEW_DEDUCTION_LOGS: {"owner", "admin", "supervisor"},
    Permission.READ_PREFERENCES: {"owner", "admin", "supervisor"},
    Permission.WRITE_PREFERENCES: {"owner", "admin"},
    Permission.VIEW_PERSONAL_DATA: {"owner", "admin"},
    Permission.READ_BALANCE_ALERTS: {"owner", "admin", "supervisor"},
    Permission.WRITE_BALANCE_ALERTS: {"owner", "admin"},
    # Rule 3.11 / issue 24: supervisors read the WABAs' caps, only owners and admins set them.
    Permission.READ_SPEND_CAPS: {"owner", "admin", "supervisor"},
    Permission.WRITE_SPEND_CAPS: {"owner", "admin"},
}


@pytest.mark.parametrize("permission", list(Permission))
@pytest.mark.parametrize("role", list(Role))
def test_role_table_grants_exactly_what_the_spec_lists(role: Role, permission: Permission) -> None:
    assert allowed(role, permission) is (role.value in ROLE_TABLE[permission])


def test_supervisor_reads_preferences_and_logs_but_sees_personal_data_masked() -> None:
    assert allowed(Role.SUPERVISOR, Permission.READ_PREFERENCES)
    assert allowed(Role.SUPERVISOR, Permission.VIEW_DEDUCTION_LOGS)
    assert not allowed(Role.SUPERVISOR, Permission.WRITE_PREFERENCES)
    assert not allowed(Role.SUPERVISOR, Permission.VIEW_PERSONAL_DATA)


# --- tokens -------------------------------------------------------------------------------------


def test_hs256_token_issued_with_the_secret_verifies_to_its_principal() -> None:
    token = issue_token(company_id=1001, role=Role.SUPERVISOR, secret=SECRET, subject="user-7")
    assert TokenVerifier(secret=SECRET).verify(token) == Principal(1001, Role.SUPERVISOR, "user-7")


def test_rs256_token_issued_with_the_private_key_verifies_with_the_public_key(rsa_pems: tuple[str, str]) -> None:
    private, public = rsa_pems
    token = issue_token(company_id=42, role="owner", private_key=private)
    assert TokenVerifier(public_key=public).verify(token) == Principal(42, Role.OWNER, None)


def test_public_key_with_escaped_newlines_from_an_environment_variable_is_accepted(
    rsa_pems: tuple[str, str],
) -> None:
    private, public = rsa_pems
    token = issue_token(company_id=42, role="owner", private_key=private)
    assert TokenVerifier(public_key=public.replace("\n", "\\n")).verify(token).company_id == 42


def test_token_signed_with_another_secret_is_refused() -> None:
    token = issue_token(company_id=1001, role="admin", secret=OTHER_SECRET)
    assert refusal(TokenVerifier(secret=SECRET), token) == "token signature is invalid"


def test_token_with_a_tampered_payload_is_refused() -> None:
    header, _, signature = issue_token(company_id=1001, role="agent", secret=SECRET).split(".")
    forged_payload = b64url(json.dumps(valid_claims(role="owner")).encode())
    assert refusal(TokenVerifier(secret=SECRET), f"{header}.{forged_payload}.{signature}") == (
        "token signature is invalid"
    )


def test_rs256_token_signed_by_another_key_is_refused(rsa_pems: tuple[str, str]) -> None:
    _, public = rsa_pems
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(valid_claims(), stranger, algorithm="RS256")
    assert refusal(TokenVerifier(public_key=public), token) == "token signature is invalid"


def test_expired_token_is_refused() -> None:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    token = issue_token(company_id=1001, role="admin", secret=SECRET, ttl_seconds=60, now=an_hour_ago)
    assert refusal(TokenVerifier(secret=SECRET), token) == "token has expired"


def test_leeway_accepts_a_token_that_expired_moments_ago() -> None:
    token = jwt.encode(valid_claims(exp=int(datetime.now(UTC).timestamp()) - 5), SECRET, algorithm="HS256")
    assert refusal(TokenVerifier(secret=SECRET), token) == "token has expired"
    assert TokenVerifier(secret=SECRET, leeway_seconds=30).verify(token).company_id == 1001


def test_token_not_valid_before_a_future_time_is_refused() -> None:
    later = int((datetime.now(UTC) + timedelta(minutes=10)).timestamp())
    token = jwt.encode(valid_claims(nbf=later), SECRET, algorithm="HS256")
    assert refusal(TokenVerifier(secret=SECRET), token) == "token is not valid yet"


def test_token_issued_in_the_future_is_refused() -> None:
    future = datetime.now(UTC) + timedelta(minutes=10)
    token = issue_token(company_id=1001, role="admin", secret=SECRET, now=future)
    assert refusal(TokenVerifier(secret=SECRET), token) == "token is not valid yet"


def test_token_without_expiry_is_refused() -> None:
    claims = valid_claims()
    del claims["exp"]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert refusal(TokenVerifier(secret=SECRET), token) == "token is missing the exp claim"


def test_unsigned_alg_none_token_is_refused() -> None:
    token = hand_made_token({"alg": "none", "typ": "JWT"}, valid_claims())
    assert refusal(TokenVerifier(secret=SECRET), token) == "token algorithm is not accepted"


def test_hs256_token_keyed_with_the_rs256_public_key_is_refused(rsa_pems: tuple[str, str]) -> None:
    # Algorithm confusion: the public key is public, so an HMAC keyed with it proves nothing.
    _, public = rsa_pems
    token = hand_made_token({"alg": "HS256", "typ": "JWT"}, valid_claims(), hs256_key=public.encode())
    assert refusal(TokenVerifier(public_key=public), token) == "token algorithm is not accepted"


def test_rs256_token_is_refused_when_only_hs256_is_configured(rsa_pems: tuple[str, str]) -> None:
    private, _ = rsa_pems
    token = issue_token(company_id=1001, role="admin", private_key=private)
    assert refusal(TokenVerifier(secret=SECRET), token) == "token algorithm is not accepted"


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_refused(algorithm: str) -> None:
    # A key long enough for these algorithms; the algorithm is refused before any signature is checked.
    token = jwt.encode(valid_claims(), SECRET * 2, algorithm=algorithm)
    assert refusal(TokenVerifier(secret=SECRET), token) == "token algorithm is not accepted"


def test_token_for_the_configured_audience_is_accepted() -> None:
    token = issue_token(company_id=1001, role="admin", secret=SECRET, audience="wabapool")
    assert TokenVerifier(secret=SECRET, audience="wabapool").verify(token).company_id == 1001


def test_token_for_another_audience_is_refused() -> None:
    token = issue_token(company_id=1001, role="admin", secret=SECRET, audience="another-service")
    assert refusal(TokenVerifier(secret=SECRET, audience="wabapool"), token) == "token audience is not accepted"


def test_token_without_audience_is_refused_when_one_is_configured() -> None:
    token = issue_token(company_id=1001, role="admin", secret=SECRET)
    assert refusal(TokenVerifier(secret=SECRET, audience="wabapool"), token) == "token is missing the aud claim"


def test_token_with_an_audience_is_accepted_when_none_is_configured() -> None:
    token = issue_token(company_id=1001, role="admin", secret=SECRET, audience="wabapool")
    assert TokenVerifier(secret=SECRET).verify(token).company_id == 1001


@pytest.mark.parametrize("missing", ["company_id", "role"])
def test_token_missing_a_required_claim_is_refused(missing: str) -> None:
    claims = valid_claims()
    del claims[missing]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert refusal(TokenVerifier(secret=SECRET), token) == f"token is missing the {missing} claim"


@pytest.mark.parametrize("company_id", [0, -5, "abc", "12a", "007", 1.5, True, [1001], 2**63])
def test_token_with_an_invalid_company_id_is_refused(company_id: object) -> None:
    token = jwt.encode(valid_claims(company_id=company_id), SECRET, algorithm="HS256")
    assert refusal(TokenVerifier(secret=SECRET), token) == "token company_id claim is not a positive integer"


def test_token_with_a_numeric_string_company_id_is_accepted() -> None:
    token = jwt.encode(valid_claims(company_id="1001"), SECRET, algorithm="HS256")
    assert TokenVerifier(secret=SECRET).verify(token).company_id == 1001


@pytest.mark.parametrize("role", ["root", "Owner", "", 3])
def test_token_with_an_unknown_role_is_refused(role: object) -> None:
    token = jwt.encode(valid_claims(role=role), SECRET, algorithm="HS256")
    assert refusal(TokenVerifier(secret=SECRET), token) == "token role claim is not a known role"


@pytest.mark.parametrize("token", [None, "", "not-a-token", "a.b.c", "x" * 9000])
def test_missing_or_malformed_token_is_refused(token: str | None) -> None:
    refusal(TokenVerifier(secret=SECRET), token)


def test_refusal_message_never_contains_the_token_or_the_secret() -> None:
    token = issue_token(company_id=1001, role="admin", secret=OTHER_SECRET)
    message = refusal(TokenVerifier(secret=SECRET), token)
    assert token not in message and SECRET not in message and OTHER_SECRET not in message


def test_verifier_needs_exactly_one_key(rsa_pems: tuple[str, str]) -> None:
    _, public = rsa_pems
    with pytest.raises(ValueError):
        TokenVerifier()
    with pytest.raises(ValueError):
        TokenVerifier(secret=SECRET, public_key=public)


def test_verifier_refuses_a_secret_shorter_than_256_bits() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenVerifier(secret="short")


def test_verifier_refuses_a_public_key_that_is_not_rsa_pem() -> None:
    with pytest.raises(ValueError):
        TokenVerifier(public_key="not a pem")


def test_verifier_repr_shows_no_key() -> None:
    assert SECRET not in repr(TokenVerifier(secret=SECRET))


def test_issue_token_refuses_an_unknown_role_and_a_non_positive_company() -> None:
    with pytest.raises(ValueError):
        issue_token(company_id=1001, role="root", secret=SECRET)
    with pytest.raises(ValueError):
        issue_token(company_id=0, role="admin", secret=SECRET)


def test_a_scoped_api_key_names_its_service_and_only_its_scopes() -> None:
    from wabapool.security import ApiKeyRing, Scope

    ring = ApiKeyRing.from_spec("pipeline:pipeline-key-0123456789:deduct+refund,payments:payments-key-0123456789")
    pipeline = ring.caller("pipeline-key-0123456789")
    assert pipeline is not None and pipeline.service == "pipeline"
    assert pipeline.may(Scope.DEDUCT) and pipeline.may(Scope.REFUND) and not pipeline.may(Scope.TOP_UP)
    payments = ring.caller("payments-key-0123456789")
    assert payments is not None and all(payments.may(scope) for scope in Scope)  # no scopes: every scope


def test_an_unknown_scope_is_refused_without_showing_the_key() -> None:
    from wabapool.security import ApiKeyRing

    with pytest.raises(ValueError, match="unknown scope") as refused:
        ApiKeyRing.from_spec("pipeline:pipeline-key-0123456789:deduct+spend")
    assert "pipeline-key-0123456789" not in str(refused.value)
