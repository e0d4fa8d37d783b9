"""The gateway's accountability end to end on loopback: every decision in the
log, tenant-scoped reads, proofs against checkpoints, and a provenance
manifest that survives the official openai SDK and fails on any change."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import rfc8785
from typer.testing import CliRunner

from mantlet.audit import Checkpoint, NoteVerifier, merkle
from mantlet.cli.app import app as cli
from mantlet.gateway import GatewaySettings, create_app

runner = CliRunner()
SECRET = "AKIA" + "Q3EGRIMNDTZ4PVBX"  # shaped like an AWS key id; not a real one


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, live_server: type[Any]
) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("state")
    settings = GatewaySettings.model_validate(
        {
            "data_dir": str(data_dir),
            "policy": "balanced",
            "upstreams": [{"name": "echo", "kind": "echo"}],
            "routes": [{"model": "echo", "upstreams": ["echo"]}],
            "audit": {"store_payloads": True, "checkpoint_interval_s": 0},
        }
    )
    application = create_app(settings)
    keys = application.state.gateway.keys
    creds = {
        "admin": keys.create(tenant="acme", role="admin")[0],
        "app": keys.create(tenant="acme", role="app")[0],
        "auditor": keys.create(tenant="acme", role="auditor")[0],
        "other_app": keys.create(tenant="globex", role="app")[0],
        "other_auditor": keys.create(tenant="globex", role="auditor")[0],
    }
    with live_server(application) as server:
        yield {"url": server.url, "keys": creds, "data_dir": data_dir}


def call(gw: dict[str, Any], method: str, path: str, who: str, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {gw['keys'][who]}"} if who else {}
    base = gw["url"].removesuffix("/v1")
    return httpx.request(method, base + path, headers=headers, timeout=30, **kw)


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """SDK clients hold pooled sockets: close them when each test ends."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def sdk(gw: dict[str, Any], who: str = "app") -> openai.OpenAI:
    client = openai.OpenAI(api_key=gw["keys"][who], base_url=gw["url"], max_retries=0)
    _CLIENTS.append(client)
    return client


def test_manifest_round_trip_through_the_openai_sdk(
    gateway: dict[str, Any], tmp_path: Path
) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "Write one line about tea."}]
    )
    token = raw.headers["x-mantlet-provenance"]
    index = int(raw.headers["x-mantlet-audit-index"])
    text = raw.parse().choices[0].message.content or ""
    jwks = call(gateway, "GET", "/.well-known/mantlet/keys.json", "").json()
    files = {"m": tmp_path / "m.jws", "t": tmp_path / "a.txt", "k": tmp_path / "keys.json"}
    files["m"].write_text(token)
    files["t"].write_text(text, encoding="utf-8")
    files["k"].write_text(json.dumps(jwks))

    def verify(manifest: Path, answer: Path) -> Any:
        args = ["verify", "--manifest", str(manifest), "--text", str(answer)]
        return runner.invoke(cli, [*args, "--keys", str(files["k"]), "--json"])

    ok = verify(files["m"], files["t"])
    assert ok.exit_code == 0, ok.output
    manifest = json.loads(ok.stdout)
    assert manifest["ai_generated"] is True
    assert manifest["digital_source_type"].endswith("trainedAlgorithmicMedia")
    assert manifest["audit"]["index"] == index
    assert manifest["generator"]["model"] == "echo"
    assert manifest["request_id"] == raw.headers["x-request-id"]

    changed_text = tmp_path / "changed.txt"
    changed_text.write_text(text[:-1] + ("X" if text[-1:] != "X" else "Y"), encoding="utf-8")
    bad = verify(files["m"], changed_text)
    assert bad.exit_code == 1 and "content hash differs" in json.loads(bad.stdout)["reason"]

    header, payload, signature = token.split(".")
    flipped = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
    changed_manifest = tmp_path / "changed.jws"
    changed_manifest.write_text(f"{header}.{flipped}.{signature}")
    bad = verify(changed_manifest, files["t"])
    assert bad.exit_code == 1
    reason = json.loads(bad.stdout)["reason"]
    assert "signature" in reason or "malformed" in reason or "not JSON" in reason

    stored = call(gateway, "GET", f"/v1/provenance/{raw.headers['x-request-id']}", "app").json()
    assert stored["jws"] == token
    assert (
        call(
            gateway, "GET", f"/v1/provenance/{raw.headers['x-request-id']}", "other_app"
        ).status_code
        == 404
    )


def test_streaming_answers_carry_a_manifest_for_the_streamed_text(
    gateway: dict[str, Any], tmp_path: Path
) -> None:
    stream = sdk(gateway).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "stream me"}], stream=True
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    # The manifest is signed when the stream ends, so it rides on the last
    # chunk (an extra field the SDK keeps) and is stored for GET later.
    extras = [c.model_extra or {} for c in chunks]
    token = next(e["mantlet_provenance"] for e in extras if "mantlet_provenance" in e)
    assert any(isinstance(e.get("mantlet_audit_index"), int) for e in extras)
    (tmp_path / "m").write_text(token)
    (tmp_path / "t").write_text(text, encoding="utf-8")
    result = runner.invoke(
        cli,
        [
            "verify",
            "--manifest",
            str(tmp_path / "m"),
            "--text",
            str(tmp_path / "t"),
            "--data-dir",
            str(gateway["data_dir"]),
        ],
    )
    assert result.exit_code == 0, result.output


def test_every_decision_is_recorded_without_secret_values(gateway: dict[str, Any]) -> None:
    before = call(gateway, "GET", "/v1/audit/records?limit=1", "admin").json()["tree_size"]
    assert call(gateway, "GET", "/v1/models", "").status_code == 401
    body = {"model": "echo", "messages": [{"role": "user", "content": f"token {SECRET}"}]}
    leaked = call(gateway, "POST", "/v1/chat/completions", "app", json=body)
    assert leaked.status_code in (200, 400)
    bad_json = call(gateway, "POST", "/v1/chat/completions", "app", content=b"{nope")
    assert bad_json.status_code == 400
    records = call(gateway, "GET", f"/v1/audit/records?start={before}&limit=100", "admin").json()[
        "data"
    ]
    statuses = [(r["record"]["route"], r["record"]["status"]) for r in records]
    assert ("/v1/models", 401) in statuses
    assert ("/v1/chat/completions", 400) in statuses
    chat = [r["record"] for r in records if r["record"]["route"] == "/v1/chat/completions"]
    assert any(d["findings"] for rec in chat for d in rec["decisions"])
    assert all(rec["request_sha256"] for rec in chat)
    dump = json.dumps(records) + (Path(gateway["data_dir"]) / "mantlet.db").read_bytes().decode(
        "latin-1"
    )
    assert SECRET not in dump  # neither in records nor (encrypted) payloads


def test_audit_reads_are_role_and_tenant_scoped(gateway: dict[str, Any]) -> None:
    call(gateway, "GET", "/v1/models", "other_app")
    assert call(gateway, "GET", "/v1/audit/records", "app").status_code == 403
    mine = call(gateway, "GET", "/v1/audit/records?limit=1000", "auditor").json()["data"]
    assert mine and {r["record"]["tenant"] for r in mine} == {"acme"}
    theirs = call(gateway, "GET", "/v1/audit/records?limit=1000", "other_auditor").json()["data"]
    assert theirs and {r["record"]["tenant"] for r in theirs} == {"globex"}
    asked = call(gateway, "GET", "/v1/audit/records?tenant=acme", "other_auditor").json()["data"]
    assert {r["record"]["tenant"] for r in asked} <= {"globex"}
    acme_seq = mine[0]["seq"]
    proof = call(gateway, "GET", f"/v1/audit/proof/inclusion?index={acme_seq}", "other_auditor")
    assert proof.status_code == 404
    everyone = call(gateway, "GET", "/v1/audit/records?limit=1000", "admin").json()["data"]
    assert {"acme", "globex"} <= {r["record"].get("tenant") for r in everyone}


def test_proofs_from_the_api_verify_against_a_signed_checkpoint(gateway: dict[str, Any]) -> None:
    assert call(gateway, "POST", "/v1/audit/checkpoint", "auditor").status_code == 403
    first = call(gateway, "POST", "/v1/audit/checkpoint", "admin").json()
    sdk(gateway).chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    call(gateway, "POST", "/v1/audit/checkpoint", "admin")
    published = call(gateway, "GET", "/v1/audit/checkpoint", "auditor").json()
    verifier = NoteVerifier(published["verifier_key"])
    checkpoint = Checkpoint.open(published["note"], verifier)
    mine = call(gateway, "GET", "/v1/audit/records?limit=1000", "auditor").json()["data"]
    index = max(r["seq"] for r in mine if r["seq"] < checkpoint.size)
    proof = call(
        gateway,
        "GET",
        f"/v1/audit/proof/inclusion?index={index}&size={checkpoint.size}",
        "auditor",
    ).json()
    merkle.verify_inclusion(
        index,
        checkpoint.size,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(p) for p in proof["path"]],
        checkpoint.root,
    )
    # The record the proof covers is exactly the served record, byte for byte.
    assert merkle.leaf_hash(rfc8785.dumps(proof["record"])) == bytes.fromhex(proof["leaf_hash"])
    older = Checkpoint.parse(first["note"].split("\n\n")[0] + "\n")
    consistency = call(
        gateway,
        "GET",
        f"/v1/audit/proof/consistency?first={older.size}&second={checkpoint.size}",
        "auditor",
    ).json()
    merkle.verify_consistency(
        older.size,
        checkpoint.size,
        older.root,
        checkpoint.root,
        [bytes.fromhex(p) for p in consistency["proof"]],
    )


def test_admin_actions_are_recorded_and_the_log_verifies(gateway: dict[str, Any]) -> None:
    created = call(
        gateway, "POST", "/v1/admin/keys", "admin", json={"tenant": "acme", "role": "app"}
    )
    assert created.status_code == 201
    records = call(gateway, "GET", "/v1/audit/records?limit=1000", "admin").json()["data"]
    admin = [r["record"] for r in records if r["record"]["type"] == "admin"]
    assert any(a.get("action") == "config.loaded" for a in admin)
    made = [a for a in admin if a.get("admin", {}).get("action") == "keys.create"]
    assert made and made[-1]["admin"]["key_id"] == created.json()["key_id"]
    assert created.json()["key"] not in json.dumps(records)
    result = runner.invoke(cli, ["audit", "verify", "--data-dir", str(gateway["data_dir"])])
    assert result.exit_code == 0, result.output


def test_the_manifest_names_the_watermark_applied(tmp_path: Path) -> None:
    """A provider that watermarks reports scheme and key id; the signed
    manifest carries them (never a key), streamed or not."""
    from fastapi.testclient import TestClient

    from mantlet.gateway.providers.echo import EchoProvider

    mark = {"scheme": "kgw", "key_id": "wk-test01", "gamma": 0.25, "delta": 2.0, "h": 1}

    class Watermarked(EchoProvider):
        async def send(self, endpoint: Any, request: Any) -> dict[str, Any]:
            return {**await super().send(endpoint, request), "mantlet_watermark": mark}

    settings = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path),
            "upstreams": [{"name": "wm", "kind": "echo"}],
            "routes": [{"model": "wm", "upstreams": ["wm"]}],
            "audit": {"checkpoint_interval_s": 0},
        }
    )
    application = create_app(settings, providers={"wm": Watermarked("wm")})
    key = application.state.gateway.keys.create(tenant="acme", role="app")[0]
    with TestClient(application) as client:
        auth = {"authorization": f"Bearer {key}"}
        body = {"model": "wm", "messages": [{"role": "user", "content": "hello"}]}
        plain = client.post("/v1/chat/completions", json=body, headers=auth)
        streamed = client.post("/v1/chat/completions", json={**body, "stream": True}, headers=auth)
    tokens = [plain.headers["x-mantlet-provenance"]]
    for line in streamed.text.splitlines():
        if "mantlet_provenance" in line:
            tokens.append(json.loads(line[6:])["mantlet_provenance"])
    assert len(tokens) == 2
    for token in tokens:
        payload = token.split(".")[1]
        manifest = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert manifest["watermark"] == mark
