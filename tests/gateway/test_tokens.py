"""OIDC/JWT bearer tokens: verified against a JWKS, mapped to tenant and role."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import ValidationError

from mantlet.gateway import GatewaySettings, create_app
from mantlet.gateway.keys import AuthError, KeyStore
from mantlet.gateway.settings import OIDCSettings
from mantlet.gateway.tokens import TokenVerifier

ISSUER, AUDIENCE = "https://idp.example.test", "mantlet"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"})


@pytest.fixture
def jwks(tmp_path: Path, signing_key: RSAKey) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [signing_key.as_dict(private=False)]}))
    return path


def token(key: Any, alg: str = "RS256", **overrides: Any) -> str:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "exp": NOW + 300,
        "iat": NOW,
        "tenant": "acme",
        "role": "app",
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": "k1"}, claims, key)


def verifier(jwks: Path, now: float = NOW) -> TokenVerifier:
    settings = OIDCSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks)
    return TokenVerifier(settings, clock=lambda: now)


def test_valid_token_maps_claims_to_a_principal(jwks: Path, signing_key: RSAKey) -> None:
    principal = verifier(jwks).verify(token(signing_key))
    assert (principal.key_id, principal.tenant, principal.role) == ("oidc:user-42", "acme", "app")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "https://evil.test"}, "invalid token"),
        ({"aud": "someone-else"}, "invalid token"),
        ({"exp": NOW - 3600}, "token expired"),
        ({"exp": None}, "invalid token"),
        ({"sub": None}, "invalid token"),
        ({"tenant": None}, "tenant or role"),
        ({"role": 7}, "tenant or role"),
    ],
)
def test_bad_claims_are_refused(
    jwks: Path, signing_key: RSAKey, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(AuthError, match=message):
        verifier(jwks).verify(token(signing_key, **overrides))


def test_wrong_signer_and_tampering_are_refused(jwks: Path, signing_key: RSAKey) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(AuthError, match="invalid token"):
        verifier(jwks).verify(token(other))
    header, payload, signature = token(signing_key).split(".")
    with pytest.raises(AuthError):
        verifier(jwks).verify(f"{header}.{payload[:-4]}AAAA.{signature}")
    with pytest.raises(AuthError):
        verifier(jwks).verify("not-a-jwt")


def test_symmetric_algorithm_confusion_is_refused(jwks: Path, signing_key: RSAKey) -> None:
    # An attacker signs with HS256 using the public key bytes as the secret
    # (joserfc itself refuses to build such a key, so the token is made by hand).
    public_pem = signing_key.as_pem(private=False)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": NOW + 60}
    header = b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    payload = b64(json.dumps({**claims, "tenant": "acme", "role": "admin"}).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError):
        verifier(jwks).verify(f"{header}.{payload}.{b64(mac)}")
    with pytest.raises(ValidationError):
        OIDCSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks, algorithms=["HS256"])


def test_settings_need_exactly_one_key_source(jwks: Path) -> None:
    with pytest.raises(ValidationError):
        OIDCSettings(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValidationError):
        OIDCSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks, jwks_url="https://x/jwks")


def test_gateway_accepts_tokens_and_applies_rbac(jwks: Path, signing_key: RSAKey) -> None:
    settings = GatewaySettings.model_validate(
        {"oidc": {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(jwks)}}
    )
    keys = KeyStore("sqlite://", b"s" * 32)
    now = int(time.time())
    app_token = token(signing_key, iat=now, exp=now + 300)
    auditor_token = token(signing_key, iat=now, exp=now + 300, role="auditor")
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    with TestClient(create_app(settings, keys=keys)) as client:
        ok = client.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {app_token}"}
        )
        assert ok.status_code == 200
        denied = client.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {auditor_token}"}
        )
        assert denied.status_code == 403
        expired = token(signing_key, iat=now - 7200, exp=now - 3600)
        refused = client.get("/v1/models", headers={"Authorization": f"Bearer {expired}"})
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == "token expired"
    keys.close()
