"""``POST /v1/responses`` through the real server with the official SDK's
``client.responses``: translated to the chat route's guard and back, streamed
or not, tools included; what needs server-side state is refused, not dropped."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from mantlet.gateway import GatewaySettings, create_app
from mantlet.gateway.keys import KeyStore
from mantlet.gateway.responses_api import StreamTranslator

AWS_KEY_ID = "AKIA" + "Q3EGRIMNDTZ4PVBX"  # shaped like a key id; not a real one
EMAIL = "jane.roe@example.org"
IMAGE_BY_FILE_ID = {"type": "input_image", "file_id": "file-1"}


def fake_upstream(seen: list[dict[str, Any]]) -> FastAPI:
    """A chat-only model on loopback. It calls ``lookup`` when offered tools
    and no tool result is in yet, and otherwise echoes the last message
    plus a key id, streamed in pieces that split the key id."""
    upstream = FastAPI()

    @upstream.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        seen.append(body)
        last = body["messages"][-1]
        content = last.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        base = {"id": "chatcmpl-up", "created": 1_700_000_000, "model": body["model"]}
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        if body.get("tools") and last["role"] == "user":
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"city": "Cobh"}'},
            }
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            text = f"You said: {content}. The deploy key id is {AWS_KEY_ID}."
            message, finish = {"role": "assistant", "content": text}, "stop"
        if not body.get("stream"):
            choice = {"index": 0, "message": message, "finish_reason": finish}
            return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

        async def events() -> AsyncIterator[bytes]:
            chunk = {**base, "object": "chat.completion.chunk"}
            if message.get("tool_calls"):
                deltas: list[dict[str, Any]] = [
                    {"tool_calls": [{"index": 0, **message["tool_calls"][0]}]}
                ]
            else:
                text = message["content"]
                cut = text.index("AKIA") + 6  # the key id arrives in two pieces
                deltas = [{"content": text[:cut]}, {"content": text[cut:]}]
            for delta in deltas:
                event = {**chunk, "choices": [{"index": 0, "delta": delta}]}
                yield f"data: {json.dumps(event)}\n\n".encode()
            end = {"index": 0, "delta": {}, "finish_reason": finish}
            yield f"data: {json.dumps({**chunk, 'choices': [end]})}\n\n".encode()
            yield f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return upstream


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, live_server: type[Any]
) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with live_server(fake_upstream(seen)) as upstream:
        settings = GatewaySettings.model_validate(
            {
                "data_dir": str(tmp_path_factory.mktemp("state")),
                "upstreams": [{"name": "up", "kind": "openai", "base_url": upstream.url}],
                "routes": [{"model": "small", "upstreams": ["up"]}],
            }
        )
        app = create_app(settings)
        keys: KeyStore = app.state.gateway.keys
        key = keys.create(tenant="acme", role="app")[0]
        with live_server(app) as gateway:
            yield gateway.url, key, seen


@pytest.fixture
def sdk(live: tuple[str, str, list[dict[str, Any]]]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=live[1], base_url=live[0], max_retries=0) as client:
        yield client


def test_a_response_is_guarded_both_ways_and_shaped_for_the_sdk(
    live: tuple[str, str, list[dict[str, Any]]],
    sdk: openai.OpenAI,
) -> None:
    response = sdk.responses.create(
        model="small",
        instructions="Answer briefly.",
        input=f"write to {EMAIL}, password=Tr0ub4dor&3",
        max_output_tokens=50,
        temperature=0.2,
    )
    upstream_saw = live[2][-1]
    system = upstream_saw["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("Answer briefly.")  # then the leak canary

    assert "Tr0ub4dor&3" not in json.dumps(upstream_saw)
    assert upstream_saw["max_tokens"] == 50 and upstream_saw["temperature"] == 0.2
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("resp_") and response.model == "small"
    text = response.output_text
    assert text.startswith("You said: write to")
    assert AWS_KEY_ID not in text and "<AWS_ACCESS_KEY_ID_1>" in text
    assert response.usage is not None and response.usage.total_tokens == 18
    assert response.instructions == "Answer briefly."


def test_streamed_response_events_never_carry_a_split_secret(
    live: tuple[str, str, list[dict[str, Any]]],
    sdk: openai.OpenAI,
) -> None:
    events = list(sdk.responses.create(model="small", input="hello there", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    text = "".join(deltas)
    assert text.startswith("You said: hello there.")
    assert AWS_KEY_ID not in text and not any("AKIAQ3" in d for d in deltas)
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == text
    final = events[-1].response
    assert final.output_text == text and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == 7
    extra = final.model_extra or {}
    assert isinstance(extra.get("mantlet_audit_index"), int)  # the record it landed in


@pytest.mark.parametrize("stream", [False, True])
def test_function_tools_round_trip(
    live: tuple[str, str, list[dict[str, Any]]], sdk: openai.OpenAI, stream: bool
) -> None:
    tools = [
        {
            "type": "function",
            "name": "lookup",
            "description": "Weather by city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    if stream:
        events = list(
            sdk.responses.create(model="small", input="weather?", tools=tools, stream=True)
        )
        assert "response.function_call_arguments.done" in [e.type for e in events]
        first = events[-1].response
    else:
        first = sdk.responses.create(model="small", input="weather?", tools=tools)
    sent_tools = live[2][-1]["tools"]
    assert sent_tools[0]["function"]["name"] == "lookup"
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert (call.name, call.call_id, json.loads(call.arguments)) == (
        "lookup",
        "call_1",
        {"city": "Cobh"},
    )
    # The agent runs the tool and sends the whole conversation back.
    second = sdk.responses.create(
        model="small",
        tools=tools,
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": f"sunny; {EMAIL}"},
        ],
    )
    messages = [m for m in live[2][-1]["messages"] if m["role"] != "system"]  # the canary's
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[2]["role"] == "tool" and messages[2]["tool_call_id"] == "call_1"
    assert EMAIL not in json.dumps(messages)  # tool output is guarded like any input
    assert second.output_text.startswith("You said: sunny;")


def test_a_blocked_prompt_is_a_400_as_on_the_chat_route(sdk: openai.OpenAI) -> None:
    private_key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + "A" * 60 + "\n-----END RSA"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="small", input=f"{private_key} PRIVATE KEY-----")
    assert caught.value.code == "content_blocked"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input"),
        ({"background": True}, "background"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"input": [{"role": "user", "content": [IMAGE_BY_FILE_ID]}]}, "input"),
    ],
)
def test_what_needs_server_state_or_hosted_tools_is_refused_by_name(
    live: tuple[str, str, list[dict[str, Any]]], extra: dict[str, Any], param: str
) -> None:
    before = len(live[2])
    body = {"model": "small", "input": "hi", **extra}
    answer = httpx.post(
        f"{live[0]}/responses", json=body, headers={"authorization": f"Bearer {live[1]}"}
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == param and error["code"] == "unsupported_parameter"
    assert len(live[2]) == before  # nothing reached the upstream


@pytest.mark.parametrize(
    "body",
    [
        {"model": "small"},
        {"model": "small", "input": []},
        {"model": "small", "input": 5},
        {"model": "small", "input": [{"role": "robot", "content": "hi"}]},
        {"model": "small", "input": [{"role": "user", "content": 5}]},
        {"model": "small", "input": [{"type": "function_call_output", "call_id": 3}]},
        {"model": "small", "input": "hi", "instructions": ["x"]},
        {"model": "small", "input": "hi", "text": {"format": {"type": "yaml"}}},
        {"model": "nope", "input": "hi"},
    ],
)
def test_malformed_responses_requests_are_4xx(
    live: tuple[str, str, list[dict[str, Any]]], body: dict[str, Any]
) -> None:
    answer = httpx.post(
        f"{live[0]}/responses", json=body, headers={"authorization": f"Bearer {live[1]}"}
    )
    assert 400 <= answer.status_code < 500
    assert set(answer.json()["error"]) >= {"message", "type", "code", "param"}


def test_models_retrieve_answers_for_allowed_models_only(
    live: tuple[str, str, list[dict[str, Any]]],
    sdk: openai.OpenAI,
) -> None:
    assert sdk.models.retrieve("small").id == "small"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-nothing")
    with (
        openai.OpenAI(api_key="mk-wrong", base_url=live[0], max_retries=0) as stranger,
        pytest.raises(openai.AuthenticationError),
    ):
        stranger.models.retrieve("small")


def test_the_sdks_stream_helper_assembles_the_same_response(
    live: tuple[str, str, list[dict[str, Any]]],
    sdk: openai.OpenAI,
) -> None:
    """``responses.stream()`` rebuilds the response from the events' indexes,
    so it fails on any event that does not fit the items before it."""
    with sdk.responses.stream(model="small", input="hello again") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(texts)
    assert final.output_text.startswith("You said: hello again.")
    assert AWS_KEY_ID not in final.output_text


def translated(chat_events: list[dict[str, Any] | str]) -> list[dict[str, Any]]:
    """Runs chat stream events through the translator; returns its events."""

    async def source() -> AsyncGenerator[bytes, None]:
        for event in chat_events:
            data = event if isinstance(event, str) else json.dumps(event)
            yield f"data: {data}\n\n".encode()

    async def run() -> list[dict[str, Any]]:
        translator = StreamTranslator({"model": "small"}, "resp_1")
        out = b"".join([chunk async for chunk in translator.translate(source())])
        lines = [line for line in out.decode().splitlines() if line.startswith("data: ")]
        return [json.loads(line[6:]) for line in lines]

    return asyncio.run(run())


def delta(**fields: Any) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": fields}]}


def test_reasoning_then_answer_become_two_items_in_order() -> None:
    events = translated(
        [
            delta(role="assistant"),
            delta(reasoning_content="think "),
            delta(reasoning_content="more"),
            delta(content="Hi"),
            delta(content=" there"),
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
            "[DONE]",
        ]
    )
    kinds = [e["type"] for e in events]
    assert kinds.count("response.reasoning_text.delta") == 2
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    final = events[-1]
    assert final["type"] == "response.incomplete"  # finish_reason length
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    reasoning, message = final["response"]["output"]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "think more"}]
    assert message["content"][0]["text"] == "Hi there"
    assert message["status"] == "completed"


def test_a_refusal_is_its_own_content_part() -> None:
    events = translated([delta(refusal="I can't"), delta(refusal=" help."), "[DONE]"])
    assert [e["delta"] for e in events if e["type"] == "response.refusal.delta"] == [
        "I can't",
        " help.",
    ]
    (message,) = events[-1]["response"]["output"]
    assert message["content"] == [{"type": "refusal", "refusal": "I can't help."}]


def test_a_stream_that_ends_in_an_error_fails_the_response() -> None:
    error = {"message": "answer blocked by policy (PRIVATE_KEY)", "code": "content_blocked"}
    events = translated([delta(content="Here is the key: "), {"error": error}])
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "content_blocked"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "content_blocked"
    assert "response.completed" not in [e["type"] for e in events]


def test_a_caller_leaving_a_responses_stream_frees_its_slot_and_is_audited(
    tmp_path: Path, live_server: type[Any]
) -> None:
    """The translated stream closes the chat stream under it, so its cleanup
    runs at once: the concurrency slot is free for the next request, and the
    audit record says the caller left."""
    upstream = FastAPI()

    @upstream.post("/v1/chat/completions")
    async def slow() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
            for i in range(40):
                choice = {"index": 0, "delta": {"content": f"word{i} " * 40}}
                yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode()
                await asyncio.sleep(0.05)

        return StreamingResponse(events(), media_type="text/event-stream")

    with live_server(upstream) as up:
        settings = GatewaySettings.model_validate(
            {
                "data_dir": str(tmp_path / "state"),
                "upstreams": [{"name": "up", "kind": "openai", "base_url": up.url}],
                "routes": [{"model": "slow", "upstreams": ["up"]}],
                "quotas": {"concurrent_per_key": 1},
                "audit": {"checkpoint_interval_s": 0},
            }
        )
        app = create_app(settings)
        key = app.state.gateway.keys.create(tenant="acme", role="app")[0]
        auditor = app.state.gateway.keys.create(tenant="acme", role="auditor")[0]
        with live_server(app) as gateway:
            body = {"model": "slow", "input": "go", "stream": True}
            headers = {"authorization": f"Bearer {key}"}
            with httpx.stream(
                "POST", f"{gateway.url}/responses", json=body, headers=headers, timeout=30
            ) as response:
                for line in response.iter_lines():
                    if "response.output_text.delta" in line:
                        break  # the caller goes away mid-answer
            deadline = time.monotonic() + 5
            while True:  # the slot frees as soon as the server notices
                busy = httpx.post(
                    f"{gateway.url}/responses",
                    json={"model": "slow", "input": "again", "stream": True},
                    headers=headers,
                    timeout=30,
                )
                if busy.status_code != 429 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert busy.status_code == 200
            records = httpx.get(
                f"{gateway.url}/audit/records",
                headers={"authorization": f"Bearer {auditor}"},
            ).json()["data"]
    left = [r["record"] for r in records if r["record"].get("route") == "/v1/responses"]
    assert left[0]["status"] == 499 and left[0]["error"] == "client_disconnected"


def test_an_unknown_parameter_that_is_not_a_name_is_not_quoted_back(
    live: tuple[str, str, list[dict[str, Any]]],
) -> None:
    """Error messages never quote the request body: a pasted value used as a
    key (here a key id) is refused without being repeated."""
    for path, body in (
        ("responses", {"model": "small", "input": "hi", AWS_KEY_ID + "=x": 1}),
        ("scan", {"text": "hi", AWS_KEY_ID + " secret": 1}),
    ):
        answer = httpx.post(
            f"{live[0]}/{path}", json=body, headers={"authorization": f"Bearer {live[1]}"}
        )
        assert answer.status_code == 400
        assert AWS_KEY_ID not in answer.text
    named = httpx.post(
        f"{live[0]}/responses",
        json={"model": "small", "input": "hi", "frobnicate": 1},
        headers={"authorization": f"Bearer {live[1]}"},
    )
    assert "'frobnicate'" in named.json()["error"]["message"]


def test_an_odd_chat_answer_still_becomes_a_response() -> None:
    """Upstreams send odd things; the translation never raises on them."""
    from mantlet.gateway.responses_api import from_chat_answer

    for answer in (
        {"choices": ["not an object"]},
        {"choices": [{"message": "text", "finish_reason": "stop"}]},
        {"choices": [{"message": {"content": "hi", "tool_calls": ["x", {"function": 3}]}}]},
    ):
        response = from_chat_answer(answer, {"model": "small"}, "resp_1")
        assert response["object"] == "response" and response["status"] == "completed"
