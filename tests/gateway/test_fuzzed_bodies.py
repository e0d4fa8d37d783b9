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
    response = client.post(
        route,
        content=json.dumps(body).encode("utf-8", "surrogatepass"),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


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
    response = client.post(
        "/v1/responses",
        content=json.dumps(body).encode("utf-8", "surrogatepass"),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
