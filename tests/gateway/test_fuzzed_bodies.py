"""Random request bodies shaped like OpenAI's (the right keys, any values)
never get a 5xx: whatever a client sends is a 200 or a clear 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mantlet.gateway import GatewaySettings, create_app
from mantlet.gateway.keys import KeyStore

KEYS = [
    "role", "content", "type", "text", "tool_calls", "function", "arguments", "name",
    "image_url", "refusal", "audio", "transcript", "data", "tool_call_id", "reasoning_content",
]  # fmt: skip
ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False),
    st.sampled_from(["", "user", "assistant", "tool", "text", "image_url", "AKIA" + "Q" * 16]),
    st.text(max_size=20),
)
VALUES = st.recursive(
    ATOMS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=12,
)
MESSAGE = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4).map(
    lambda m: {"role": "user", **m}
)
FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "tools",
            "stream",
            "n",
            "logprobs",
            "response_format",
            "stop",
            "user",
            "metadata",
            "prediction",
        ]
    ),
    VALUES,
    max_size=3,
)


def posted_without_5xx(client: TestClient, key: str, route: str, body: Any) -> Any:
    """POSTs ``body`` as JSON (lone surrogates kept, so it may not be UTF-8)
    and checks the answer is no 5xx, and an error in OpenAI's shape."""
    response = client.post(
        route,
        content=json.dumps(body).encode("utf-8", "surrogatepass"),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    return response


@pytest.fixture(scope="module", params=["plain", "pseudonymizing"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str]]:
    """The gateway as shipped, and with pseudonymization on (which walks
    messages and request fields with code of its own)."""
    keys = KeyStore("sqlite://", b"s" * 32)
    key = keys.create(tenant="acme", role="app")[0]
    privacy = {"privacy": {"style": "placeholder"}} if request.param == "pseudonymizing" else {}
    configured = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path_factory.mktemp("fuzz")),
            "upstreams": [{"name": "echo", "kind": "echo"}],
            "routes": [{"model": "echo", "upstreams": ["echo"]}],
            "quotas": {"requests_per_key": "1000000/minute"},
            **privacy,
        }
    )
    app = create_app(configured, keys=keys)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key
    if app.state.gateway.privacy:
        app.state.gateway.privacy.close()
    keys.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]),
    messages=st.lists(MESSAGE, max_size=3),
    text=VALUES,
    fields=FIELDS,
)
def test_no_body_shaped_like_a_request_gets_a_5xx(
    gateway: tuple[TestClient, str],
    route: str,
    messages: list[dict[str, Any]],
    text: Any,
    fields: dict[str, Any],
) -> None:
    client, key = gateway
    body = {"model": "echo", "messages": messages, "prompt": text, "input": text, **fields}
    posted_without_5xx(client, key, route, body)


RESPONSES_KEYS = [
    "type", "role", "content", "text", "call_id", "name", "arguments", "output", "image_url",
    "file_data", "filename", "detail", "refusal", "format", "effort", "parameters",
]  # fmt: skip
RESPONSES_ATOMS = st.one_of(
    ATOMS,
    st.sampled_from(
        [
            "message",
            "function_call",
            "function_call_output",
            "reasoning",
            "input_text",
            "output_text",
            "input_image",
            "input_file",
            "function",
            "json_schema",
            "auto",
        ]
    ),
)
RESPONSES_VALUES = st.recursive(
    RESPONSES_ATOMS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(RESPONSES_KEYS), inner, max_size=4)
    ),
    max_leaves=14,
)
RESPONSES_FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "instructions",
            "tools",
            "tool_choice",
            "text",
            "reasoning",
            "max_output_tokens",
            "temperature",
            "stream",
            "metadata",
            "store",
            "include",
            "parallel_tool_calls",
        ]
    ),
    RESPONSES_VALUES,
    max_size=3,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.one_of(
        RESPONSES_VALUES,
        st.lists(st.dictionaries(st.sampled_from(RESPONSES_KEYS), RESPONSES_VALUES), max_size=3),
    ),
    fields=RESPONSES_FIELDS,
)
def test_no_responses_api_body_gets_a_5xx(
    gateway: tuple[TestClient, str], items: Any, fields: dict[str, Any]
) -> None:
    client, key = gateway
    body = {"model": "echo", "input": items, **fields}
    posted_without_5xx(client, key, "/v1/responses", body)


class FuzzedUpstream:
    """An upstream whose answers (whole, or as stream chunks) are whatever
    the test draws: the gateway must treat them as the untrusted input they
    are."""

    name = "fuzzed"

    def __init__(self) -> None:
        self.answer: Any = None
        self.chunks: list[Any] = []

    async def send(self, endpoint: str, request: Any) -> Any:
        return self.answer

    async def stream(self, endpoint: str, request: Any) -> Any:
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        return None


ANSWER_KEYS = [
    "data", "embedding", "object", "choices", "message", "delta", "content", "tool_calls",
    "function", "arguments", "name", "id", "index", "finish_reason", "usage", "total_tokens",
    "refusal", "reasoning_content", "text", "role", "audio", "transcript", "logprobs",
]  # fmt: skip
ANSWER_VALUES = st.recursive(
    st.one_of(ATOMS, st.sampled_from(["stop", "length", "tool_calls", "assistant"])),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(ANSWER_KEYS), inner, max_size=4)
    ),
    max_leaves=16,
)
ANSWERS = st.dictionaries(st.sampled_from(ANSWER_KEYS), ANSWER_VALUES, max_size=4)


@pytest.fixture(scope="module")
def fuzzed_upstream(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, str, FuzzedUpstream]]:
    keys = KeyStore("sqlite://", b"s" * 32)
    key = keys.create(tenant="acme", role="app")[0]
    upstream = FuzzedUpstream()
    configured = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path_factory.mktemp("fuzz-up")),
            "upstreams": [{"name": "fuzzed", "kind": "echo"}],
            "routes": [{"model": "m", "upstreams": ["fuzzed"]}],
            "quotas": {"requests_per_key": "1000000/minute"},
        }
    )
    app = create_app(configured, keys=keys, providers={"fuzzed": upstream})
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key, upstream
    keys.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    answer=ANSWERS,
    chunks=st.lists(ANSWERS, max_size=4),
    route=st.sampled_from(
        ["/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/embeddings"]
    ),
    stream=st.booleans(),
)
def test_no_upstream_answer_gets_the_caller_a_500(
    fuzzed_upstream: tuple[TestClient, str, FuzzedUpstream],
    answer: dict[str, Any],
    chunks: list[dict[str, Any]],
    route: str,
    stream: bool,
) -> None:
    client, key, upstream = fuzzed_upstream
    upstream.answer, upstream.chunks = answer, chunks
    body: dict[str, Any] = {"model": "m", "stream": stream}
    if route == "/v1/chat/completions":
        body["messages"] = [{"role": "user", "content": "hi"}]
    elif route == "/v1/embeddings":
        body = {"model": "m", "input": "hi"}
    else:
        body["input" if route == "/v1/responses" else "prompt"] = "hi"
    response = client.post(route, json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code in (200, 400, 502), response.text[:300]
    if stream and response.status_code == 200:
        assert "internal error" not in response.text
    elif response.status_code != 200:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("content", "usage"),
    [
        pytest.param('"hi"', '{"total_tokens": NaN}', id="nan"),
        pytest.param('"hi \\ud800 there"', '{"total_tokens": 3}', id="lone-surrogate"),
    ],
)
def test_an_upstream_answer_python_parses_but_json_text_cannot_hold_is_a_502_not_a_500(
    live_server: type[Any], content: str, usage: str
) -> None:
    """Python's parser takes NaN and Infinity, which the audit log's
    canonical JSON cannot hold, and half of a UTF-16 surrogate pair, which
    no detector or client can encode: such an answer is invalid JSON from
    the upstream."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    upstream = FastAPI()

    @upstream.post("/v1/chat/completions")
    async def chat() -> Response:
        body = '{"choices": [{"index": 0, "message": {"role": "assistant", "content": '
        body += content + '}}], "usage": ' + usage + "}"
        return Response(body, media_type="application/json")

    keys = KeyStore("sqlite://", b"s" * 32)
    key = keys.create(tenant="acme", role="app")[0]
    with live_server(upstream) as up:
        configured = GatewaySettings.model_validate(
            {
                "data_dir": "nan-state",
                "upstreams": [{"name": "up", "kind": "openai", "base_url": up.url, "retries": 0}],
                "routes": [{"model": "m", "upstreams": ["up"]}],
            }
        )
        with TestClient(create_app(configured, keys=keys)) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            answer = client.post(
                "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
    keys.close()
    assert answer.status_code == 502
    assert "invalid JSON" in answer.json()["error"]["message"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.dictionaries(
        st.sampled_from(["side", "text", "messages", "documents", "fields", "canaries"]),
        st.one_of(
            VALUES,
            st.lists(MESSAGE, max_size=3),
            st.sampled_from(["input", "output"]),
            st.lists(st.text(max_size=30), max_size=3),
        ),
        max_size=4,
    )
)
def test_no_scan_body_gets_a_5xx(gateway: tuple[TestClient, str], body: dict[str, Any]) -> None:
    client, key = gateway
    response = posted_without_5xx(client, key, "/v1/scan", body)
    if response.status_code == 200:
        assert response.json()["object"] == "mantlet.scan"
