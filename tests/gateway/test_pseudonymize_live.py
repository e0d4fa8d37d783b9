"""Pseudonymization through the real gateway on loopback: PII never reaches
the upstream (a real HTTP server that echoes what it got), and the caller gets
the original values back, streamed or not, through the official openai SDK."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from mantlet.gateway import GatewaySettings, create_app
from mantlet.gateway.pseudonymize import GatewayPrivacy, PrivacySettings

PROMPT = (
    "Please repeat: mail jane.roe@example.org, card 4111 1111 1111 1111, "
    "IBAN GB82 WEST 1234 5698 7654 32."
)


def echo_upstream(seen: list[str]) -> FastAPI:
    upstream = FastAPI()

    @upstream.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> Any:
        last = body["messages"][-1]["content"]
        seen.append(str(body["messages"]))
        if body.get("stream"):
            # Five characters per event: surrogates arrive split across chunks.
            def events() -> Iterator[str]:
                base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
                for i in range(0, len(last), 5):
                    choice = {"index": 0, "delta": {"content": last[i : i + 5]}}
                    yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
                end = {"index": 0, "delta": {}, "finish_reason": "stop"}
                yield f"data: {json.dumps({**base, 'choices': [end]})}\n\ndata: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": last},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        }

    @upstream.post("/v1/completions")
    async def complete(body: dict[str, Any]) -> Any:
        prompt = str(body["prompt"])
        seen.append(prompt)
        base = {"id": "cmpl-echo", "object": "text_completion", "created": 0, "model": "m"}
        if body.get("stream"):

            def events() -> Iterator[str]:
                for i in range(0, len(prompt), 5):
                    choice = {"index": 0, "text": prompt[i : i + 5], "finish_reason": None}
                    yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
                end = {"index": 0, "text": "", "finish_reason": "stop"}
                yield f"data: {json.dumps({**base, 'choices': [end]})}\n\ndata: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        choice = {"index": 0, "text": prompt, "finish_reason": "stop"}
        usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
        return {**base, "choices": [choice], "usage": usage}

    return upstream


BOTH_SIDES_POLICY = """
version: 1
extends: balanced
detectors:
  pii:
    action: redact
    sides: both
"""


@pytest.fixture(scope="module", params=["placeholder", "fake", "fake+pii-on-output"])
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    live_server: type[Any],
) -> Iterator[tuple[str, str, list[str]]]:
    """The default (balanced) policy also redacts PII on input: with realistic
    fakes the gateway must keep it from redacting the surrogates."""
    seen: list[str] = []
    LiveServer = live_server
    with LiveServer(echo_upstream(seen)) as upstream:
        state = tmp_path_factory.mktemp("state")
        policy = state / "policy.yaml"
        policy.write_text(BOTH_SIDES_POLICY)
        settings = GatewaySettings.model_validate(
            {
                "data_dir": str(state),
                "policy": str(policy) if "output" in request.param else "balanced",
                "upstreams": [{"name": "up", "kind": "openai", "base_url": upstream.url}],
                "routes": [{"model": "small", "upstreams": ["up"]}],
                "privacy": {"style": request.param.split("+")[0]},
            }
        )
        app = create_app(settings)
        key = app.state.gateway.keys.create(tenant="acme", role="app")[0]
        with LiveServer(app) as gateway:
            yield gateway.url, key, seen
        app.state.gateway.privacy.close()


def test_round_trip_restores_the_original_and_the_upstream_never_sees_pii(
    live: tuple[str, str, list[str]],
) -> None:
    url, key, seen = live
    sdk = openai.OpenAI(api_key=key, base_url=url, max_retries=0)
    answer = sdk.chat.completions.create(
        model="small", messages=[{"role": "user", "content": PROMPT}]
    )
    assert answer.choices[0].message.content == PROMPT
    upstream_saw = seen[-1]
    for value in ("jane.roe@example.org", "4111 1111 1111 1111", "GB82 WEST"):
        assert value not in upstream_saw
    assert "<EMAIL_ADDRESS_1>" in upstream_saw or "@example.com" in upstream_saw  # surrogate


def test_streamed_answer_is_restored_too(live: tuple[str, str, list[str]]) -> None:
    url, key, seen = live
    sdk = openai.OpenAI(api_key=key, base_url=url, max_retries=0)
    stream = sdk.chat.completions.create(
        model="small", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == PROMPT
    assert "jane.roe@example.org" not in seen[-1]


def test_conversation_header_keeps_surrogates_stable_across_requests(
    live: tuple[str, str, list[str]],
) -> None:
    url, key, seen = live
    sdk = openai.OpenAI(
        api_key=key,
        base_url=url,
        max_retries=0,
        default_headers={"x-mantlet-conversation": "thread-7"},
    )
    for content in ("first: bob@example.com", "then alice@example.com and bob@example.com"):
        answer = sdk.chat.completions.create(
            model="small", messages=[{"role": "user", "content": content}]
        )
        assert answer.choices[0].message.content == content
    first, second = seen[-2], seen[-1]
    assert "bob@example.com" not in second and "alice@example.com" not in second
    bob = first.split("first: ")[1].split("'")[0]  # bob's surrogate in the first request
    assert second.count(bob) == 1  # the same surrogate again in the second request


@pytest.mark.parametrize("stream", [False, True])
def test_completion_prompts_are_pseudonymized_and_restored(
    live: tuple[str, str, list[str]], stream: bool
) -> None:
    url, key, seen = live
    with openai.OpenAI(api_key=key, base_url=url, max_retries=0) as sdk:
        if stream:
            events = sdk.completions.create(model="small", prompt=PROMPT, stream=True)
            text = "".join(e.choices[0].text for e in events if e.choices)
        else:
            text = sdk.completions.create(model="small", prompt=PROMPT).choices[0].text
    assert text == PROMPT
    for value in ("jane.roe@example.org", "4111 1111 1111 1111", "GB82 WEST"):
        assert value not in seen[-1]


@pytest.mark.parametrize("stream", [False, True])
def test_responses_api_input_is_pseudonymized_and_its_answer_restored(
    live: tuple[str, str, list[str]], stream: bool
) -> None:
    url, key, seen = live
    with openai.OpenAI(api_key=key, base_url=url, max_retries=0) as sdk:
        if stream:
            with sdk.responses.stream(model="small", input=PROMPT) as events:
                text = events.get_final_response().output_text
        else:
            text = sdk.responses.create(model="small", input=PROMPT).output_text
    assert text == PROMPT
    for value in ("jane.roe@example.org", "4111 1111 1111 1111", "GB82 WEST"):
        assert value not in seen[-1]


def test_reasoning_and_refusals_are_restored_like_content(tmp_path: Path) -> None:
    privacy = GatewayPrivacy(PrivacySettings(), tmp_path)
    try:
        [message] = privacy.pseudonymizer.pseudonymize_messages(
            [{"role": "user", "content": "mail jane.roe@example.org"}], "c"
        )
        surrogate = message["content"].removeprefix("mail ")
        assert surrogate == "<EMAIL_ADDRESS_1>"
        said = f"write to {surrogate}"
        answer = {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": said,
                        "reasoning_content": said,
                        "refusal": said,
                    }
                }
            ]
        }
        privacy.restore(answer, "c")
        restored = answer["choices"][0]["message"]
        assert {restored[k] for k in ("content", "reasoning_content", "refusal")} == {
            "write to jane.roe@example.org"
        }
    finally:
        privacy.close()


def test_another_key_naming_the_same_conversation_gets_nothing_restored(tmp_path: Path) -> None:
    settings = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path),
            "upstreams": [{"name": "echo", "kind": "echo"}],
            "routes": [{"model": "echo", "upstreams": ["echo"]}],
            "privacy": {"style": "placeholder"},
        }
    )
    app = create_app(settings)
    keys = app.state.gateway.keys
    alice, mallory = (keys.create(tenant="acme", role="app")[0] for _ in range(2))

    def say(key: str, content: str) -> str:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": content}]},
            headers={"Authorization": f"Bearer {key}", "x-mantlet-conversation": "thread-7"},
        )
        assert response.status_code == 200
        return str(response.json()["choices"][0]["message"]["content"])

    with TestClient(app) as client:
        assert say(alice, "mail bob@example.com") == "echo: mail bob@example.com"
        assert say(alice, "who is <EMAIL_ADDRESS_1>?") == "echo: who is bob@example.com?"
        # Same tenant, same conversation name, another key: the surrogate stays one.
        assert say(mallory, "who is <EMAIL_ADDRESS_1>?") == "echo: who is <EMAIL_ADDRESS_1>?"
    app.state.gateway.privacy.close()


class ToolCallingUpstream:
    """Records requests; answers with a message and, optionally, a tool call
    whose arguments repeat what the request's first user message said."""

    name = "rec"

    def __init__(self, content: str, call: bool = False) -> None:
        self.content, self.call = content, call
        self.seen: list[dict[str, Any]] = []

    async def send(self, endpoint: str, request: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(json.loads(json.dumps(request)))
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.call:
            said = next(m["content"] for m in request["messages"] if m["role"] == "user")
            arguments = json.dumps({"to": said.split()[-1]})
            function = {"name": "send", "arguments": arguments}
            message["tool_calls"] = [{"id": "c9", "type": "function", "function": function}]
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return {"id": "x", "object": "chat.completion", "choices": [choice]}

    async def aclose(self) -> None:
        return None


def privacy_app(tmp_path: Path, upstream: ToolCallingUpstream) -> tuple[FastAPI, str]:
    settings = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path),
            "upstreams": [{"name": "rec", "kind": "echo"}],
            "routes": [{"model": "m", "upstreams": ["rec"]}],
            "privacy": {"style": "placeholder"},
        }
    )
    app = create_app(settings, providers={"rec": upstream})
    return app, app.state.gateway.keys.create(tenant="acme", role="app")[0]


def test_a_redaction_never_borrows_a_surrogate_of_the_conversation(tmp_path: Path) -> None:
    """Content is pseudonymized (alice gets <EMAIL_ADDRESS_1>); a value the
    guard redacts elsewhere (bob, as a schema's enum value: an identifier the
    caller's code matches on, so not pseudonymized) must not get the same
    placeholder, or the model would take one for the other and the answer
    would restore alice where bob was meant."""
    upstream = ToolCallingUpstream("sent to <EMAIL_ADDRESS_2>")
    app, key = privacy_app(tmp_path, upstream)
    schema = {"type": "object", "properties": {"cc": {"enum": ["bob@example.org"]}}}
    tool = {"type": "function", "function": {"name": "send", "parameters": schema}}
    body = {"model": "m", "messages": [{"role": "user", "content": "mail alice@example.com"}]}
    with TestClient(app) as client:
        response = client.post(
            "/v1/chat/completions",
            json={**body, "tools": [tool]},
            headers={"Authorization": f"Bearer {key}"},
        )
    app.state.gateway.privacy.close()
    assert response.status_code == 200
    [sent] = upstream.seen
    user = next(m for m in sent["messages"] if m["role"] == "user")
    assert user["content"] == "mail <EMAIL_ADDRESS_1>"
    cc = sent["tools"][0]["function"]["parameters"]["properties"]["cc"]
    assert cc == {"enum": ["<EMAIL_ADDRESS_2>"]}
    # Bob's address was redacted, not pseudonymized: it is not restored, and
    # alice's is not put in its place.
    assert response.json()["choices"][0]["message"]["content"] == "sent to <EMAIL_ADDRESS_2>"


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_are_pseudonymized_and_restored(tmp_path: Path, stream: bool) -> None:
    """An agent's history carries values in tool-call arguments, and the model
    answers with tool calls built from surrogates: the upstream sees only
    surrogates, the caller's tool gets the real values."""
    upstream = ToolCallingUpstream("calling", call=True)
    app, key = privacy_app(tmp_path, upstream)
    earlier = {"name": "send", "arguments": json.dumps({"to": "bob@example.org"})}
    messages = [
        {"role": "user", "content": "mail alice@example.com"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": earlier}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    with TestClient(app) as client:
        sdk = openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client)
        answer = sdk.chat.completions.create(model="m", messages=messages, stream=stream)
        if stream:
            calls = [c for chunk in answer for c in (chunk.choices[0].delta.tool_calls or [])]
        else:
            calls = answer.choices[0].message.tool_calls or []
    app.state.gateway.privacy.close()
    [sent] = upstream.seen
    assert "bob@example.org" not in json.dumps(sent) and "alice@example.com" not in json.dumps(sent)
    assert [json.loads(c.function.arguments) for c in calls] == [{"to": "alice@example.com"}]


def test_request_fields_are_pseudonymized_and_come_back_in_tool_calls(tmp_path: Path) -> None:
    """A tool declaration that names a person's address: the upstream sees a
    surrogate, and when the model passes it on in a tool call the caller's
    agent gets the real address back, not a placeholder it cannot use."""
    seen: list[dict[str, Any]] = []

    class Agentic:
        name = "agentic"

        async def send(self, endpoint: str, request: dict[str, Any]) -> dict[str, Any]:
            seen.append(request)
            described = request["tools"][0]["function"]["description"]
            cc = described.split("cc ")[1].split(" ")[0]  # whatever stands for the address
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "send_mail", "arguments": json.dumps({"cc": cc})},
            }
            message = {
                "role": "assistant",
                "content": f"for {request['user']}",
                "tool_calls": [call],
            }
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            return {"id": "c", "object": "chat.completion", "created": 0, "choices": [choice]}

        async def aclose(self) -> None:
            return None

    settings = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path),
            "upstreams": [{"name": "agentic", "kind": "echo"}],
            "routes": [{"model": "m", "upstreams": ["agentic"]}],
            "privacy": {"style": "placeholder"},
        }
    )
    app = create_app(settings, providers={"agentic": Agentic()})
    key = app.state.gateway.keys.create(tenant="acme", role="app")[0]
    tool = {
        "type": "function",
        "function": {
            "name": "send_mail",
            "description": "Sends mail; cc bob.stone@example.com always",
            "parameters": {"type": "object", "properties": {"cc": {"type": "string"}}},
        },
    }
    with (
        TestClient(app) as client,
        openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client) as sdk,
    ):
        answer = sdk.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "mail jane.roe@example.org the notes"}],
            tools=[tool],  # type: ignore[list-item]
            user="carol@example.net",
        )
    app.state.gateway.privacy.close()
    upstream_saw = json.dumps(seen[-1])
    for value in ("bob.stone@example.com", "carol@example.net", "jane.roe@example.org"):
        assert value not in upstream_saw
    assert seen[-1]["tools"][0]["function"]["name"] == "send_mail"  # identifiers untouched
    message = answer.choices[0].message
    assert json.loads(message.tool_calls[0].function.arguments) == {"cc": "bob.stone@example.com"}
    assert message.content == "for carol@example.net"


@pytest.mark.parametrize("style", ["placeholder", "fake"])
def test_names_places_and_organizations_are_pseudonymized_with_the_crf_ner(
    tmp_path: Path, live_server: type[Any], style: str
) -> None:
    """With `ner: en` the upstream sees no name, town or company, and the
    caller gets them back, streamed (surrogates split across 5-character
    events) or not."""
    seen: list[str] = []
    LiveServer = live_server
    prompt = "Please repeat: Marguerite Okonkwo from Nordlicht Logistics moved to Lisbon."
    with LiveServer(echo_upstream(seen)) as upstream:
        settings = GatewaySettings.model_validate(
            {
                "data_dir": str(tmp_path),
                "upstreams": [{"name": "up", "kind": "openai", "base_url": upstream.url}],
                "routes": [{"model": "small", "upstreams": ["up"]}],
                "privacy": {"style": style, "ner": "en"},
            }
        )
        app = create_app(settings)
        key = app.state.gateway.keys.create(tenant="acme", role="app")[0]
        with LiveServer(app) as gateway:
            sdk = openai.OpenAI(api_key=key, base_url=gateway.url, max_retries=0)
            messages: Any = [{"role": "user", "content": prompt}]
            answer = sdk.chat.completions.create(model="small", messages=messages)
            assert answer.choices[0].message.content == prompt
            stream = sdk.chat.completions.create(model="small", messages=messages, stream=True)
            streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert streamed == prompt
        app.state.gateway.privacy.close()
    for upstream_saw in seen:
        for value in ("Okonkwo", "Marguerite", "Lisbon"):
            assert value not in upstream_saw
    if style == "placeholder":
        # Lisbon is redacted whatever its label (docs/pii.md: labels of places
        # and organizations are the model's weak point).
        assert "<PERSON_1>" in seen[0] and re.search(r"<(LOCATION|ORGANIZATION)_\d>", seen[0])
