"""The HTTP target: retries on transient failures, recognises guard blocks,
spends a request budget, and spaces requests under a rate limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

import mantlet.redteam
from mantlet.redteam.target import BudgetExhausted, HttpChatModel, RequestBudget

OK = {
    "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"completion_tokens": 1},
}


def _model(responses: list[httpx.Response], **kwargs: Any) -> tuple[HttpChatModel, list[Any]]:
    calls: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return responses[min(len(calls), len(responses)) - 1]

    model = HttpChatModel(
        "http://t/v1", "m", api_key="sk-test", transport=httpx.MockTransport(handler), **kwargs
    )
    return model, calls


def _chat(model: HttpChatModel, n: int = 1) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return list(
                await asyncio.gather(
                    *(
                        model.chat([{"role": "user", "content": "x"}], max_tokens=8, temperature=0)
                        for _ in range(n)
                    )
                )
            )
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_retries_transient_errors_then_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    model, calls = _model([httpx.Response(503), httpx.Response(429), httpx.Response(200, json=OK)])
    (reply,) = _chat(model)
    assert (reply.status, reply.text, len(calls)) == ("ok", "hi", 3)
    assert calls[0].headers["authorization"] == "Bearer sk-test"


def test_gives_up_after_retries_and_does_not_retry_client_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    model, calls = _model([httpx.Response(503)], retries=1)
    assert _chat(model)[0].status == "error" and len(calls) == 2
    model, calls = _model([httpx.Response(401, json={"error": {"code": "invalid_api_key"}})])
    assert _chat(model)[0].status == "error" and len(calls) == 1


def test_guard_refusals_are_blocked_not_errors() -> None:
    blocked = {"error": {"message": "request blocked by policy", "code": "content_blocked"}}
    model, _ = _model([httpx.Response(400, json=blocked)])
    assert _chat(model)[0].status == "blocked"
    filtered = {"choices": [{"message": {"content": "[x]"}, "finish_reason": "content_filter"}]}
    model, _ = _model([httpx.Response(200, json=filtered)])
    assert _chat(model)[0].status == "blocked"


def test_budget_is_spent_per_request() -> None:
    model, calls = _model([httpx.Response(200, json=OK)], budget=RequestBudget(2))
    assert len(_chat(model, 2)) == 2
    with pytest.raises(BudgetExhausted):
        _chat(model)
    assert len(calls) == 2


def test_rate_limit_spaces_requests() -> None:
    model, _ = _model([httpx.Response(200, json=OK)], rate_per_second=20.0)
    start = time.monotonic()
    _chat(model, 5)
    assert time.monotonic() - start >= 4 / 20 - 0.01


def test_public_names_exist() -> None:
    for name in mantlet.redteam.__all__:
        assert hasattr(mantlet.redteam, name), name


_real_sleep = asyncio.sleep


async def _no_sleep(delay: float) -> None:
    await _real_sleep(0)
