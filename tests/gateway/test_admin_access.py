"""Administrative access: a TOTP second factor (enrolment, codes good once,
lockout, encryption at rest, the admin routes asking for it) and custom roles
from the settings."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from typer.testing import CliRunner

from mantlet.cli.app import app as cli
from mantlet.gateway import GatewaySettings, create_app
from mantlet.gateway.app import server_secret
from mantlet.gateway.keys import KeyStore
from mantlet.gateway.mfa import MAX_FAILURES, MfaResult, TotpStore

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def secret_of(uri: str) -> str:
    query = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
    return query["secret"][0]


def code_at(uri: str, when: float) -> str:
    return pyotp.TOTP(secret_of(uri)).at(when)


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[KeyStore]:
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", SECRET)
    yield store
    store.close()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_a_code_is_good_once_and_only_near_now(keys: KeyStore) -> None:
    clock = Clock()
    totp = TotpStore(keys.engine, SECRET, clock=clock)
    uri = totp.enroll("adminkey01")
    assert uri.startswith("otpauth://totp/") and "issuer=Mantlet" in uri
    assert totp.check("adminkey01", code_at(uri, NOW)) is MfaResult.OK
    assert totp.check("adminkey01", code_at(uri, NOW)) is MfaResult.WRONG  # replayed
    clock.now += 30
    assert totp.check("adminkey01", code_at(uri, NOW - 30)) is MfaResult.WRONG  # older step
    drifted = code_at(uri, clock.now + 30)
    spaced = f"{drifted[:3]} {drifted[3:]}"  # as authenticator apps show it
    assert totp.check("adminkey01", spaced) is MfaResult.OK  # one step of clock drift
    assert totp.check("adminkey01", code_at(uri, clock.now + 120)) is MfaResult.WRONG
    assert totp.check("adminkey01", None) is MfaResult.MISSING
    assert totp.check("otherkey01", "123456") is MfaResult.NOT_ENROLLED


def test_wrong_codes_lock_until_enrolled_again(keys: KeyStore) -> None:
    clock = Clock()
    totp = TotpStore(keys.engine, SECRET, clock=clock)
    uri = totp.enroll("adminkey01")
    good = code_at(uri, NOW)
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(MAX_FAILURES):
        assert totp.check("adminkey01", wrong) is MfaResult.WRONG
    assert totp.check("adminkey01", good) is MfaResult.LOCKED  # even the right code
    uri = totp.enroll("adminkey01")
    assert totp.check("adminkey01", code_at(uri, NOW)) is MfaResult.OK


def test_secrets_are_encrypted_and_bound_to_their_key(keys: KeyStore, tmp_path: Path) -> None:
    totp = TotpStore(keys.engine, SECRET, clock=Clock())
    uri = totp.enroll("adminkey01")
    raw = (tmp_path / "keys.db").read_bytes()
    assert secret_of(uri).encode() not in raw
    # Another server secret cannot open it: the check fails closed.
    stranger = TotpStore(keys.engine, b"t" * 32, clock=Clock())
    assert stranger.check("adminkey01", code_at(uri, NOW)) is MfaResult.WRONG


def test_rotation_carries_the_enrolment_to_the_new_key(keys: KeyStore) -> None:
    totp = TotpStore(keys.engine, SECRET, clock=Clock())
    uri = totp.enroll("oldkey0001")
    totp.transfer("oldkey0001", "newkey0001")
    assert not totp.is_enrolled("oldkey0001")
    assert totp.check("newkey0001", code_at(uri, NOW)) is MfaResult.OK


# --- the gateway -------------------------------------------------------------


def settings(mode: str, **extra: Any) -> GatewaySettings:
    return GatewaySettings.model_validate({"admin_mfa": mode, **extra})


def test_an_enrolled_admin_key_needs_a_code_on_admin_routes(keys: KeyStore) -> None:
    admin, info = keys.create(tenant="ops", role="admin")
    headers = {"Authorization": f"Bearer {admin}"}
    with TestClient(create_app(settings("enrolled"), keys=keys)) as client:
        assert client.get("/v1/admin/keys", headers=headers).status_code == 200  # not enrolled
        enrolled = client.post(f"/v1/admin/keys/{info.key_id}/mfa", headers=headers)
        assert enrolled.status_code == 201
        uri = enrolled.json()["otpauth_uri"]
        missing = client.get("/v1/admin/keys", headers=headers)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "mfa_required"
        assert secret_of(uri) not in missing.text
        code = code_at(uri, time.time())
        ok = client.get("/v1/admin/keys", headers={**headers, "x-mantlet-otp": code})
        assert ok.status_code == 200
        replay = client.get("/v1/admin/keys", headers={**headers, "x-mantlet-otp": code})
        assert replay.status_code == 401
        # Ordinary routes never ask for it.
        assert client.get("/v1/models", headers=headers).status_code == 200
        # Every tenant's audit records are an admin route too.
        assert client.get("/v1/audit/records", headers=headers).status_code == 401


def test_required_mode_refuses_unenrolled_keys_and_tokens_without_a_factor(
    keys: KeyStore, tmp_path: Path
) -> None:
    signing_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [signing_key.as_dict(private=False)]}))
    oidc = {"issuer": "https://idp.test", "audience": "mantlet", "jwks_file": str(jwks)}
    admin, info = keys.create(tenant="ops", role="admin")
    headers = {"Authorization": f"Bearer {admin}"}

    def admin_token(**claims: Any) -> str:
        now = int(time.time())
        body = {"iss": "https://idp.test", "aud": "mantlet", "sub": "alice", "exp": now + 300}
        body |= {"tenant": "ops", "role": "admin", **claims}
        return jwt.encode({"alg": "RS256", "kid": "k1"}, body, signing_key)

    with TestClient(create_app(settings("required", oidc=oidc), keys=keys)) as client:
        refused = client.get("/v1/admin/keys", headers=headers)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "mfa_not_enrolled"
        # Nor can such a key enrol itself over the API.
        assert client.post(f"/v1/admin/keys/{info.key_id}/mfa", headers=headers).status_code == 403
        plain = {"Authorization": f"Bearer {admin_token(amr=['pwd'])}"}
        assert client.get("/v1/admin/keys", headers=plain).json()["error"]["code"] == (
            "mfa_required"
        )
        strong = {"Authorization": f"Bearer {admin_token(amr=['pwd', 'otp'])}"}
        assert client.get("/v1/admin/keys", headers=strong).status_code == 200


def test_off_mode_asks_for_nothing(keys: KeyStore) -> None:
    admin, info = keys.create(tenant="ops", role="admin")
    TotpStore(keys.engine, SECRET).enroll(info.key_id)
    with TestClient(create_app(settings("off"), keys=keys)) as client:
        response = client.get("/v1/admin/keys", headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200


def test_cli_enrols_and_removes(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "state"
    created = runner.invoke(
        cli, ["keys", "create", "--data-dir", str(data), "--role", "admin", "--json"]
    )
    assert created.exit_code == 0, created.output
    key = json.loads(created.output)
    enrolled = runner.invoke(
        cli, ["keys", "mfa-enroll", key["key_id"], "--data-dir", str(data), "--json"]
    )
    assert enrolled.exit_code == 0, enrolled.output
    uri = json.loads(enrolled.output)["otpauth_uri"]
    rotated = runner.invoke(
        cli, ["keys", "rotate", key["key_id"], "--data-dir", str(data), "--json"]
    )
    new_id = json.loads(rotated.output)["key_id"]
    settings_ = GatewaySettings.model_validate({"data_dir": str(data)})
    store = KeyStore(settings_.resolved_database_url, server_secret(data))
    totp = TotpStore(store.engine, server_secret(data))
    assert totp.check(new_id, code_at(uri, time.time())) is MfaResult.OK
    unknown = runner.invoke(cli, ["keys", "mfa-enroll", "aaaaaaaaaa", "--data-dir", str(data)])
    assert unknown.exit_code != 0
    removed = runner.invoke(cli, ["keys", "mfa-remove", new_id, "--data-dir", str(data)])
    assert removed.exit_code == 0 and not totp.is_enrolled(new_id)
    store.close()


# --- custom roles --------------------------------------------------------------


def test_custom_roles_from_settings_grant_exactly_their_permissions(keys: KeyStore) -> None:
    custom = settings("enrolled", roles={"reviewer": ["models", "audit:read"]})
    reviewer, _ = keys.create(tenant="acme", role="reviewer")
    admin, _ = keys.create(tenant="ops", role="admin")
    as_reviewer = {"Authorization": f"Bearer {reviewer}"}
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    with TestClient(create_app(custom, keys=keys)) as client:
        assert client.get("/v1/models", headers=as_reviewer).status_code == 200
        records = client.get("/v1/audit/records", headers=as_reviewer)
        assert records.status_code == 200
        assert {r["record"].get("tenant") for r in records.json()["data"]} <= {"acme", None}
        chat = client.post("/v1/chat/completions", json=body, headers=as_reviewer)
        assert chat.status_code == 403
        made = client.post(
            "/v1/admin/keys",
            headers={"Authorization": f"Bearer {admin}"},
            json={"tenant": "acme", "role": "reviewer"},
        )
        assert made.status_code == 201
    # Without the setting the same key holds nothing (fail closed).
    with TestClient(create_app(settings("enrolled"), keys=keys)) as client:
        assert client.get("/v1/models", headers=as_reviewer).status_code == 403


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ({"reviewer": ["audit:write"]}, "unknown permission"),
        ({"admin": ["models"]}, "built in"),
        ({"Bad Name": ["models"]}, "not a role name"),
    ],
)
def test_malformed_custom_roles_are_refused(roles: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GatewaySettings.model_validate({"roles": roles})


def test_cli_refuses_a_role_the_settings_do_not_define(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["keys", "create", "--data-dir", str(tmp_path), "--role", "root"]
    )
    assert result.exit_code != 0
    assert "unknown role" in result.output
