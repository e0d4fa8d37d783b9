"""Incremental guarded streaming: text is released as it arrives, a secret
split across upstream chunks never reaches the client, and a block
mid-stream ends the stream with an error event."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mantlet.core.types import Action, Finding, Side, Verdict
from mantlet.gateway import GatewaySettings, create_app
from mantlet.gateway.keys import KeyStore
from mantlet.gateway.streaming import StreamBlocked, StreamGuard

SECRET = b"s" * 32
AWS_KEY_ID = "AKIA" + "Q3EGRIMNDTZ4PVBX"  # shaped like a key id; not a real one
FILLER = "The weather report for the coming week looks calm and mild everywhere. " * 8


class ScriptedStream:
    """An upstream that streams the given pieces of text, as a model would."""

    def __init__(self, pieces: list[str], name: str = "scripted") -> None:
        self.name = name
        self.pieces = pieces
        self.produced = 0

    async def send(self, endpoint: str, request: Mapping[str, Any]) -> dict[str, Any]:
        raise AssertionError("streaming requests must use stream()")

    async def stream(self, endpoint: str, request: Mapping[str, Any]) -> AsyncIterator[dict]:
        base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        for piece in self.pieces:
            self.produced += 1
            await asyncio.sleep(0)
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece}}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12},
        }

    async def aclose(self) -> None:
        return None


@pytest.fixture
def keys() -> Iterator[KeyStore]:
    store = KeyStore("sqlite://", SECRET)
    yield store
    store.close()


def client_with(keys: KeyStore, provider: ScriptedStream, **extra: Any) -> TestClient:
    settings = GatewaySettings.model_validate(
        {
            "upstreams": [{"name": provider.name, "kind": "echo"}],
            "routes": [{"model": "m", "upstreams": [provider.name]}],
            "audit": {"checkpoint_interval_s": 0},
            **extra,
        }
    )
    return TestClient(create_app(settings, keys=keys, providers={provider.name: provider}))


def sse_events(response: Any) -> list[dict[str, Any]]:
    events = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    return events


def test_a_secret_split_across_chunks_never_reaches_the_client(keys: KeyStore) -> None:
    key, _ = keys.create(tenant="acme", role="app")
    pieces = [FILLER, "the deploy key id is AK", "IAQ3EGRI", "MNDTZ4P", "VBX, ", FILLER]
    with client_with(keys, ScriptedStream(pieces)) as client:
        sdk = openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client)
        chunks = list(
            sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "report"}], stream=True
            )
        )
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    text = "".join(deltas)
    assert AWS_KEY_ID not in text
    assert not any(p in d for d in deltas for p in ("AKIAQ3", "Q3EGRIMN", "MNDTZ4P"))
    assert "<AWS_ACCESS_KEY_ID_1>" in text
    assert text.startswith(FILLER) and text.endswith(FILLER)
    assert sum(1 for d in deltas if d) >= 3  # released in several pieces, not one


class ReasoningStream(ScriptedStream):
    """A reasoning model: a trace in ``reasoning_content`` deltas, then the answer."""

    def __init__(self, trace: list[str], answer: list[str], field: str) -> None:
        super().__init__(answer, "reasoning")
        self.trace, self.field = trace, field

    async def stream(self, endpoint: str, request: Mapping[str, Any]) -> AsyncIterator[dict]:
        base = {"id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        for piece in self.trace:
            yield {**base, "choices": [{"index": 0, "delta": {self.field: piece}}]}
        async for chunk in super().stream(endpoint, request):
            yield chunk


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "refusal"])
def test_a_secret_split_across_reasoning_chunks_is_redacted(keys: KeyStore, field: str) -> None:
    key, _ = keys.create(tenant="acme", role="app")
    trace = ["Let me think. ", "The deploy key id is AK", "IAQ3EGRI", "MNDTZ4P", "VBX, so", FILLER]
    provider = ReasoningStream(trace, ["Done: ", FILLER], field)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with client_with(keys, provider) as client:
        response = client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )
    assert response.status_code == 200
    assert not any(p in response.text for p in ("AKIAQ3", "Q3EGRIMN", "MNDTZ4P"))
    deltas = [e["choices"][0]["delta"] for e in sse_events(response) if e.get("choices")]
    relayed = "".join(d.get(field, "") for d in deltas)
    assert relayed.startswith("Let me think. The deploy key id is <AWS_ACCESS_KEY_ID_1>, so")
    assert "".join(d.get("content") or "" for d in deltas) == "Done: " + FILLER


def test_text_is_released_before_the_upstream_finishes(keys: KeyStore) -> None:
    key, _ = keys.create(tenant="acme", role="app")
    provider = ScriptedStream([FILLER[i : i + 40] for i in range(0, len(FILLER), 40)] * 3)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    released_at: list[int] = []
    with (
        client_with(keys, provider) as client,
        client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                content = (event.get("choices") or [{}])[0].get("delta", {}).get("content")
                if content:
                    released_at.append(provider.produced)
    assert released_at and released_at[0] < len(provider.pieces)  # the first text came early


def test_a_block_mid_stream_ends_with_an_error_event(keys: KeyStore) -> None:
    key, _ = keys.create(tenant="acme", role="app")
    # The strict profile blocks secrets in answers.
    provider = ScriptedStream([FILLER, f"and the key is {AWS_KEY_ID}. ", FILLER, FILLER])
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with client_with(keys, provider, policy="strict") as client:
        response = client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )
        sdk = openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client)
        with pytest.raises(openai.APIError):
            for _ in sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "go"}], stream=True
            ):
                pass
    events = sse_events(response)
    assert events[-1]["error"]["code"] == "content_blocked"
    sent = "".join(
        (e.get("choices") or [{}])[0].get("delta", {}).get("content") or "" for e in events[:-1]
    )
    assert AWS_KEY_ID not in sent and "AKIA" not in sent
    assert "[DONE]" not in response.text


async def _redacting_check(text: str) -> Verdict:
    """A stand-in pipeline: redacts the word 'secretvalue'."""
    findings = []
    start = text.find("secretvalue")
    if start >= 0:
        findings.append(Finding("t", "WORD", start, start + 11, 1.0, action=Action.REDACT))
    sanitized = text.replace("secretvalue", "<WORD_1>") if findings else None
    action = Action.REDACT if findings else Action.ALLOW
    return Verdict(action, Side.OUTPUT, tuple(findings), sanitized_text=sanitized)


async def test_the_guard_never_cuts_through_a_finding() -> None:
    guard = StreamGuard(_redacting_check, holdback=8, step=1)
    out = ""
    for piece in ["x" * 30, " secret", "value", " and more text here", " end"]:
        out += await guard.feed(piece)
        assert "secret" not in out or "secretvalue" not in out
        assert not out.endswith(("secret", "secretv", "secretva"))
    out += await guard.finish()
    assert out == "x" * 30 + " <WORD_1> and more text here end"


async def test_an_unclosed_pem_block_is_held_until_it_closes() -> None:
    guard = StreamGuard(_redacting_check, holdback=8, step=1)
    out = await guard.feed("intro text -----BEGIN PRIVATE KEY-----\n" + "A" * 200)
    assert "BEGIN" not in out and out.startswith("intro")


async def test_blocking_verdicts_stop_the_guard() -> None:
    async def block(text: str) -> Verdict:
        return Verdict(Action.BLOCK, Side.OUTPUT)

    guard = StreamGuard(block, holdback=8, step=1)
    with pytest.raises(StreamBlocked):
        await guard.feed("anything at all")


class SlowStream(ScriptedStream):
    async def stream(self, endpoint: str, request: Mapping[str, Any]) -> AsyncIterator[dict]:
        async for chunk in super().stream(endpoint, request):
            await asyncio.sleep(0.05)
            yield chunk


def test_a_client_leaving_mid_stream_is_recorded_and_frees_its_slot(
    keys: KeyStore, live_server: type[Any], tmp_path: Any
) -> None:
    import httpx

    key, _ = keys.create(tenant="acme", role="app")
    admin, _ = keys.create(tenant="acme", role="admin")
    provider = SlowStream([FILLER] * 40)
    settings = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path),
            "upstreams": [{"name": provider.name, "kind": "echo"}],
            "routes": [{"model": "m", "upstreams": [provider.name]}],
            "audit": {"checkpoint_interval_s": 0},
            "quotas": {"concurrent_per_key": 1},
        }
    )
    app = create_app(settings, keys=keys, providers={provider.name: provider})
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    auth = {"authorization": f"Bearer {key}"}
    with live_server(app) as server:
        base = server.url.removesuffix("/v1")
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, headers=auth) as r:
            for line in r.iter_lines():
                if "content" in line:
                    break  # leave after the first text
        deadline = time.monotonic() + 20
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            listing = httpx.get(
                f"{base}/v1/audit/records?limit=1000", headers={"authorization": f"Bearer {admin}"}
            ).json()["data"]
            records = [x["record"] for x in listing if x["record"].get("status") == 499]
            if records:
                break
            time.sleep(0.2)
        assert records and records[0]["error"] == "client_disconnected"
        # The concurrency slot (1 per key) was given back when the stream ended.
        again = httpx.post(f"{base}/v1/chat/completions", json=body, headers=auth, timeout=60)
        assert again.status_code == 200


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=30),
    field=st.sampled_from(["content", "reasoning_content"]),
)
def test_no_chunking_lets_a_secret_through(keys: KeyStore, cuts: list[int], field: str) -> None:
    """Wherever the upstream cuts its chunks, the key never reaches the client,
    in the answer or in a reasoning trace."""
    text = FILLER[:150] + f"the deploy key id is {AWS_KEY_ID}, keep it safe. " + FILLER[:150]
    points = sorted({c % len(text) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in itertools.pairwise(points) if b > a]
    provider = (
        ScriptedStream(pieces)
        if field == "content"
        else ReasoningStream(pieces, ["Done."], "reasoning_content")
    )
    key, _ = keys.create(tenant="acme", role="app")
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with client_with(keys, provider) as client:
        response = client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )
    deltas = [e["choices"][0]["delta"] for e in sse_events(response) if e.get("choices")]
    received = "".join(d.get(field) or "" for d in deltas)
    assert AWS_KEY_ID not in received
    assert not any(piece in response.text for piece in (AWS_KEY_ID[:10], AWS_KEY_ID[8:]))
    assert received == text.replace(AWS_KEY_ID, "<AWS_ACCESS_KEY_ID_1>")


class ToolCallStream(ScriptedStream):
    """A model that answers with one tool call, its arguments streamed in pieces."""

    def __init__(self, arguments: str) -> None:
        super().__init__([], "tools")
        self.arguments = arguments

    async def stream(self, endpoint: str, request: Mapping[str, Any]) -> AsyncIterator[dict]:
        base = {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "deploy"}}
        yield {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [head]}}],
        }
        for i in range(0, len(self.arguments), 7):
            piece = {"index": 0, "function": {"arguments": self.arguments[i : i + 7]}}
            yield {**base, "choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}


def streamed_tool_calls(keys: KeyStore, arguments: str) -> list[Any]:
    key, _ = keys.create(tenant="acme", role="app")
    with client_with(keys, ToolCallStream(arguments)) as client:
        sdk = openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client)
        chunks = sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "deploy"}], stream=True
        )
        return [
            call
            for chunk in chunks
            if chunk.choices
            for call in chunk.choices[0].delta.tool_calls or []
        ]


def test_a_streamed_tool_call_reaches_the_client(keys: KeyStore) -> None:
    """Streamed tool calls were refused whole ("a detector failed"): a text
    check always carries its sanitized text, which was taken for a redaction."""
    [call] = streamed_tool_calls(keys, json.dumps({"service": "billing", "region": "eu-west-1"}))
    assert (call.id, call.function.name) == ("call_1", "deploy")
    assert json.loads(call.function.arguments) == {"service": "billing", "region": "eu-west-1"}


def test_a_secret_in_streamed_tool_call_arguments_is_redacted(keys: KeyStore) -> None:
    [call] = streamed_tool_calls(keys, json.dumps({"key_id": AWS_KEY_ID, "region": "eu"}))
    assert AWS_KEY_ID not in call.function.arguments
    assert json.loads(call.function.arguments) == {
        "key_id": "<AWS_ACCESS_KEY_ID_1>",
        "region": "eu",
    }


def test_usage_chunk_only_when_the_caller_asks_but_always_counted(keys: KeyStore) -> None:
    """OpenAI sends the usage chunk (with an empty choices list) only under
    ``stream_options.include_usage``; code that reads ``chunk.choices[0]`` on
    every chunk must keep working. The budget counts usage either way."""
    key, _ = keys.create(tenant="acme", role="app")
    provider = ScriptedStream(["hello ", "there"])
    with client_with(keys, provider, quotas={"tokens_per_key": "20/day"}) as client:
        sdk = openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client)
        messages = [{"role": "user", "content": "hi"}]
        plain = list(sdk.chat.completions.create(model="m", messages=messages, stream=True))
        assert all(chunk.choices for chunk in plain)
        assert "".join(c.choices[0].delta.content or "" for c in plain) == "hello there"
        asked = list(
            sdk.chat.completions.create(
                model="m", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        )
        assert asked[-1].choices == [] and asked[-1].usage is not None
        assert asked[-1].usage.total_tokens == 12
        with pytest.raises(openai.RateLimitError):  # 12 + 12 tokens spent of 20
            sdk.chat.completions.create(model="m", messages=messages, stream=True)
