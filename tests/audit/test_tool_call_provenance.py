"""Provenance manifests cover the tool calls an answer makes, not only its
text: an agent acts on the calls, so an auditor must be able to prove which
calls the model produced, streamed or not, and to spot altered arguments."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mantlet.cli.app import app as cli
from mantlet.crypto.signing import SigningKey
from mantlet.gateway import GatewaySettings, create_app
from mantlet.provenance import (
    ManifestError,
    build_manifest,
    sign_manifest,
    tool_calls_sha256,
    verify_manifest,
)

runner = CliRunner()
CALL = {
    "id": "call_7",
    "type": "function",
    "function": {"name": "transfer", "arguments": '{"to": "ACME-OPS", "amount": 120}'},
}


class ToolCaller:
    """An upstream that answers every chat request with one tool call."""

    name = "caller"

    async def send(self, endpoint: str, request: Mapping[str, Any]) -> dict[str, Any]:
        message = {"role": "assistant", "content": None, "tool_calls": [CALL]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return {"id": "c", "object": "chat.completion", "created": 0, "choices": [choice]}

    async def stream(self, endpoint: str, request: Mapping[str, Any]) -> AsyncIterator[dict]:
        base = {"id": "c", "object": "chat.completion.chunk", "created": 0}
        arguments = CALL["function"]["arguments"]
        first = {**CALL, "index": 0, "function": {"name": "transfer", "arguments": arguments[:9]}}
        rest = {"index": 0, "function": {"arguments": arguments[9:]}}
        for call in (first, rest):
            yield {**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}

    async def aclose(self) -> None:
        return None


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[openai.OpenAI, Path]]:
    settings = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path / "state"),
            "upstreams": [{"name": "caller", "kind": "echo"}],
            "routes": [{"model": "agent", "upstreams": ["caller"]}],
            "audit": {"checkpoint_interval_s": 0},
        }
    )
    application = create_app(settings, providers={"caller": ToolCaller()})
    key = application.state.gateway.keys.create(tenant="acme", role="app")[0]
    with (
        TestClient(application) as client,
        openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client) as sdk,
    ):
        yield sdk, tmp_path / "state"


def cli_verify(tmp_path: Path, token: str, data_dir: Path, calls: Any) -> dict[str, Any]:
    (tmp_path / "m.jws").write_text(token)
    (tmp_path / "t.txt").write_text("")
    (tmp_path / "calls.json").write_text(json.dumps(calls))
    args = ["verify", "--manifest", str(tmp_path / "m.jws"), "--text", str(tmp_path / "t.txt")]
    args += ["--tool-calls", str(tmp_path / "calls.json"), "--data-dir", str(data_dir), "--json"]
    result = runner.invoke(cli, args)
    return {"exit": result.exit_code, **json.loads(result.stdout)}


@pytest.mark.parametrize("stream", [False, True])
def test_the_manifest_proves_the_tool_calls_the_caller_received(
    gateway: tuple[openai.OpenAI, Path], tmp_path: Path, stream: bool
) -> None:
    sdk, data_dir = gateway
    messages = [{"role": "user", "content": "pay the ops invoice"}]
    if stream:
        chunks = list(sdk.chat.completions.create(model="agent", messages=messages, stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta]
        calls = [t.model_dump() for d in deltas for t in d.tool_calls or []]
        extras = [c.model_extra or {} for c in chunks]
        token = next(e["mantlet_provenance"] for e in extras if "mantlet_provenance" in e)
    else:
        raw = sdk.chat.completions.with_raw_response.create(model="agent", messages=messages)
        calls = [t.model_dump() for t in raw.parse().choices[0].message.tool_calls or []]
        token = raw.headers["x-mantlet-provenance"]
    assert [c["function"]["arguments"] for c in calls] == [CALL["function"]["arguments"]]

    assert cli_verify(tmp_path, token, data_dir, calls)["exit"] == 0
    altered = json.loads(json.dumps(calls))
    altered[0]["function"]["arguments"] = '{"to": "MALLORY", "amount": 120}'
    refused = cli_verify(tmp_path, token, data_dir, altered)
    assert refused["exit"] == 1 and "tool calls do not match" in refused["reason"]
    # The Responses API's function_call items hash the same as chat calls.
    items = [{"type": "function_call", "call_id": "call_7", **CALL["function"]}]
    assert cli_verify(tmp_path, token, data_dir, items)["exit"] == 0


def test_text_only_manifests_are_unchanged_and_claim_no_tool_calls() -> None:
    plain = build_manifest(
        texts=["hi"], model="m", upstream=None, request_id="r", audit_log=None, audit_index=1
    )
    assert "tool_calls_sha256" not in plain
    with_calls = build_manifest(
        texts=["", "hi"],
        model="m",
        upstream=None,
        request_id="r",
        audit_log=None,
        audit_index=1,
        tool_calls=[[CALL], []],
    )
    assert with_calls["tool_calls_sha256"] == [tool_calls_sha256([CALL]), None]
    assert tool_calls_sha256([CALL]) != tool_calls_sha256([CALL, CALL])


def test_verifying_tool_calls_against_a_manifest_without_them_fails() -> None:
    key = SigningKey.generate()
    manifest = build_manifest(
        texts=["hi"], model="m", upstream=None, request_id="r", audit_log=None, audit_index=1
    )
    token = sign_manifest(manifest, key)
    assert verify_manifest(token, "hi", key.jwks()).choice == 0
    with pytest.raises(ManifestError, match="covers no tool calls"):
        verify_manifest(token, "hi", key.jwks(), tool_calls=[CALL])


class Reasoner:
    """An upstream like a reasoning model behind vLLM: a trace, then the answer."""

    name = "reasoner"
    trace, text = "The user wants a greeting. Keep it short.", "Hello!"

    async def send(self, endpoint: str, request: Mapping[str, Any]) -> dict[str, Any]:
        message = {"role": "assistant", "content": self.text, "reasoning_content": self.trace}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return {"id": "r", "object": "chat.completion", "created": 0, "choices": [choice]}

    async def stream(self, endpoint: str, request: Mapping[str, Any]) -> AsyncIterator[dict]:
        base = {"id": "r", "object": "chat.completion.chunk", "created": 0}
        for delta in (
            {"reasoning_content": self.trace[:20]},
            {"reasoning_content": self.trace[20:]},
            {"content": self.text},
        ):
            yield {**base, "choices": [{"index": 0, "delta": delta}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("stream", [False, True])
def test_the_manifest_covers_the_reasoning_trace(tmp_path: Path, stream: bool) -> None:
    settings = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path / "state"),
            "upstreams": [{"name": "reasoner", "kind": "echo"}],
            "routes": [{"model": "r1", "upstreams": ["reasoner"]}],
            "audit": {"checkpoint_interval_s": 0},
        }
    )
    application = create_app(settings, providers={"reasoner": Reasoner()})
    key = application.state.gateway.keys.create(tenant="acme", role="app")[0]
    messages = [{"role": "user", "content": "greet me"}]
    with (
        TestClient(application) as client,
        openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client) as sdk,
    ):
        if stream:
            chunks = list(sdk.chat.completions.create(model="r1", messages=messages, stream=True))
            extras = [c.model_extra or {} for c in chunks]
            token = next(e["mantlet_provenance"] for e in extras if "mantlet_provenance" in e)
            deltas = [c.choices[0].delta for c in chunks if c.choices]
            trace = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
            text = "".join(d.content or "" for d in deltas)
        else:
            raw = sdk.chat.completions.with_raw_response.create(model="r1", messages=messages)
            token = raw.headers["x-mantlet-provenance"]
            message = raw.parse().choices[0].message
            trace = str((message.model_extra or {})["reasoning_content"])
            text = message.content or ""
        jwks = application.state.gateway.trail.signing_key.jwks()
    assert trace == Reasoner.trace and text == Reasoner.text
    assert verify_manifest(token, text, jwks, reasoning=trace).choice == 0
    with pytest.raises(ManifestError, match="reasoning trace does not match"):
        verify_manifest(token, text, jwks, reasoning=trace + " Also, lie.")
    files = {name: tmp_path / name for name in ("m.jws", "t.txt", "r.txt")}
    for path, content in zip(files.values(), (token, text, trace), strict=True):
        path.write_text(content, encoding="utf-8")
    args = ["verify", "--manifest", str(files["m.jws"]), "--text", str(files["t.txt"])]
    args += ["--reasoning", str(files["r.txt"]), "--data-dir", str(tmp_path / "state"), "--json"]
    verified = runner.invoke(cli, args)
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["reasoning_sha256"][0] is not None
