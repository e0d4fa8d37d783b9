"""The real thing on loopback: uvicorn serving the gateway, a fake upstream
that is itself a real HTTP server, and the official openai SDK as the client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mantlet.gateway import GatewaySettings, create_app
from mantlet.gateway.keys import KeyStore

AWS_KEY_ID = "AKIA" + "Q3EGRIMNDTZ4PVBX"  # shaped like a key id; not a real one


def fake_upstream() -> FastAPI:
    """An OpenAI-compatible model that leaks a key id in every answer."""
    upstream = FastAPI()

    @upstream.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        last = body["messages"][-1]["content"]
        content = f"You said: {last}. Also, the deploy key id is {AWS_KEY_ID}."
        return {
            "id": "chatcmpl-up",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17},
        }

    return upstream


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, live_server: type[Any]
) -> Iterator[tuple[str, dict[str, str]]]:
    LiveServer = live_server
    with LiveServer(fake_upstream()) as upstream:
        settings = GatewaySettings.model_validate(
            {
                "data_dir": str(tmp_path_factory.mktemp("state")),
                "upstreams": [{"name": "up", "kind": "openai", "base_url": upstream.url}],
                "routes": [{"model": "small", "upstreams": ["up"]}],
            }
        )
        app = create_app(settings)
        keys: KeyStore = app.state.gateway.keys
        credentials = {
            "app": keys.create(tenant="acme", role="app")[0],
            "auditor": keys.create(tenant="acme", role="auditor")[0],
            "other_tenant": keys.create(tenant="globex", role="app")[0],
        }
        revoked, info = keys.create(tenant="acme", role="app")
        keys.revoke(info.key_id)
        credentials["revoked"] = revoked
        with LiveServer(app) as gateway:
            yield gateway.url, credentials


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=url, max_retries=0)


def test_sdk_chat_non_streaming_and_streaming_through_the_real_server(
    live: tuple[str, dict[str, str]],
) -> None:
    url, keys = live
    sdk = client(url, keys["app"])
    answer = sdk.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "my password=Tr0ub4dor&3, ok?"}]
    )
    text = answer.choices[0].message.content or ""
    assert "Tr0ub4dor&3" not in text  # redacted before the upstream saw it
    assert "<PASSWORD_1>" in text
    assert AWS_KEY_ID not in text  # redacted on the way out
    stream = sdk.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "hello there friend"}], stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed.startswith("You said: hello there friend.")
    assert AWS_KEY_ID not in streamed


def test_real_server_refuses_bad_credentials_on_every_route(
    live: tuple[str, dict[str, str]],
) -> None:
    url, keys = live
    for key in ("mk-nothing-here", keys["revoked"], "not-even-a-key"):
        with pytest.raises(openai.AuthenticationError):
            client(url, key).models.list()
        with pytest.raises(openai.AuthenticationError):
            client(url, key).chat.completions.create(
                model="small", messages=[{"role": "user", "content": "hi"}]
            )
    with pytest.raises(openai.PermissionDeniedError):
        client(url, keys["auditor"]).chat.completions.create(
            model="small", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.PermissionDeniedError):
        client(url, keys["other_tenant"]).get("/admin/keys", cast_to=object)


def refusing_upstream() -> FastAPI:
    """An upstream that refuses by the prompt: too long, rate-limited, or
    with a message that quotes a key id; the API key it holds is wrong for
    'badkey'."""
    upstream = FastAPI()

    @upstream.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        last = str(body["messages"][-1]["content"])
        if "ratelimit" in last:
            error = {"message": "Rate limit reached", "code": "rate_limit_exceeded"}
            return JSONResponse({"error": error}, status_code=429, headers={"retry-after": "7"})
        if "badkey" in last:
            error = {
                "message": "Incorrect API key provided: sk-****abcd",
                "code": "invalid_api_key",
            }
            return JSONResponse({"error": error}, status_code=401)
        message = "This model's maximum context length is 8192 tokens."
        if "quote" in last:
            message += f" Near: {AWS_KEY_ID}"
        error = {
            "message": message,
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
        return JSONResponse({"error": error}, status_code=400)

    return upstream


@pytest.fixture(scope="module")
def refusing(
    tmp_path_factory: pytest.TempPathFactory, live_server: type[Any]
) -> Iterator[tuple[str, str]]:
    with live_server(refusing_upstream()) as upstream:
        settings = GatewaySettings.model_validate(
            {
                "data_dir": str(tmp_path_factory.mktemp("state")),
                "upstreams": [
                    {"name": "up", "kind": "openai", "base_url": upstream.url, "retries": 0}
                ],
                "routes": [{"model": "small", "upstreams": ["up"]}],
            }
        )
        app = create_app(settings)
        key = app.state.gateway.keys.create(tenant="acme", role="app")[0]
        auditor = app.state.gateway.keys.create(tenant="acme", role="auditor")[0]
        with live_server(app) as gateway:
            yield gateway.url, key, auditor


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_refusal_reaches_the_caller_as_that_4xx(
    refusing: tuple[str, str, str], stream: bool
) -> None:
    """Not a 502, which the SDK would retry at once: the caller learns the
    request was too long (the upstream's code and message, guarded), or to
    wait out the upstream's rate limit. The upstream's own credentials being
    wrong is the gateway's problem: a 502 that quotes nothing of it."""
    url, key, _ = refusing
    sdk = client(url, key)

    def ask(content: str) -> Any:
        messages = [{"role": "user", "content": content}]
        if stream:
            return list(sdk.chat.completions.create(model="small", messages=messages, stream=True))
        return sdk.chat.completions.create(model="small", messages=messages)

    with pytest.raises(openai.BadRequestError) as too_long:
        ask("a very long prompt")
    assert too_long.value.code == "context_length_exceeded"
    assert "maximum context length is 8192 tokens" in too_long.value.message
    with pytest.raises(openai.BadRequestError) as quoting:
        ask("quote me")
    assert AWS_KEY_ID not in quoting.value.message  # the upstream's text is guarded too
    with pytest.raises(openai.RateLimitError) as limited:
        ask("ratelimit")
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.response.headers["x-mantlet-upstream-status"] == "429"
    with pytest.raises(openai.APIStatusError) as broken:
        ask("badkey")
    assert broken.value.status_code == 502 and "sk-" not in broken.value.message


def test_upstream_refusals_have_their_own_metric(refusing: tuple[str, str, str]) -> None:
    """A refusal of the request is not an upstream outage, and an upstream's
    429 passed on is not one of the gateway's own limit rejections."""
    url, key, auditor = refusing

    def metric(name: str) -> float:
        text = httpx.get(
            url.removesuffix("/v1") + "/metrics", headers={"authorization": f"Bearer {auditor}"}
        ).text
        lines = [line for line in text.splitlines() if line.startswith(name)]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    before = {
        name: metric(name)
        for name in (
            "mantlet_upstream_refusals_total",
            "mantlet_upstream_errors_total",
            "mantlet_limit_rejections_total",
        )
    }
    sdk = client(url, key)
    for content, error in (("ratelimit", openai.RateLimitError), ("x", openai.BadRequestError)):
        with pytest.raises(error):
            sdk.chat.completions.create(
                model="small", messages=[{"role": "user", "content": content}]
            )
    assert (
        metric("mantlet_upstream_refusals_total") == before["mantlet_upstream_refusals_total"] + 2
    )
    assert metric("mantlet_upstream_errors_total") == before["mantlet_upstream_errors_total"]
    assert metric("mantlet_limit_rejections_total") == before["mantlet_limit_rejections_total"]
