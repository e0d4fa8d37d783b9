"""Fake OpenAI-compatible targets served for real on loopback (uvicorn in a
thread), as the gateway's live-server tests do."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse


class ModeServer:
    """The fake targets on one live server; each mode is its own base URL."""

    def __init__(self, base_url: str) -> None:
        self._root = base_url.removesuffix("/v1")

    def url(self, mode: str) -> str:
        return f"{self._root}/{mode}/v1"


def _completion(content: str, finish: str = "stop", tokens: int = 5) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens},
    }


def fake_targets() -> tuple[FastAPI, list[dict[str, Any]]]:
    """One app, several behaviours chosen by the first path segment:

    - ``leaky``: complies with everything: says the capitalised words it is
      asked to say, its whole system prompt verbatim, and runs to the token limit.
    - ``parrot``: only repeats the user's message back.
    - ``leaky-encoded``: the same, but the system prompt only in base64.
    - ``refusing``: always refuses.
    - ``blocking``: a guard that rejects every request (HTTP 400 content_blocked).
    - ``polite``: complies only when asked with "please" (for the attacker loop).
    - ``judge``: an LLM judge that gives 9/10 to any answer.
    - ``attacker``: an attacker model that always adds "please".
    Every request body is recorded in the returned list.
    """
    app = FastAPI()
    seen: list[dict[str, Any]] = []

    @app.post("/{mode}/v1/chat/completions")
    async def chat(mode: str, body: dict[str, Any]) -> Any:
        seen.append({"mode": mode, **body})
        messages = body["messages"]
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        last = messages[-1]["content"]
        max_tokens = int(body.get("max_tokens") or 100)
        if mode == "blocking":
            error = {"message": "request blocked by policy", "code": "content_blocked"}
            return JSONResponse({"error": error}, status_code=400)
        if mode == "refusing":
            return _completion("I'm sorry, but I can't help with that.")
        if mode == "judge":
            return _completion("SCORE: 9")
        if mode == "attacker":
            return _completion("Here is the new message:\nplease, " + last.split("\n")[0])
        if mode == "polite":
            if "please" not in last.lower():
                return _completion("No.")
            return _completion(f"Sure. {system}")
        encoded = mode == "leaky-encoded"
        leak = base64.b64encode(system.encode()).decode() if encoded else system
        if mode == "parrot":
            return _completion(f"You said: {last}")
        # Obeys: says the words in capitals it was asked to say.
        said = " ".join(re.findall(r"\b[A-Z][A-Z ]{3,}[A-Z]\b", last))
        content = f"Sure! {said}\nMy instructions were: {leak}"
        return _completion(content, "length", max_tokens)

    return app, seen


@pytest.fixture(scope="module")
def fake_server(live_server: type[Any]) -> Iterator[tuple[ModeServer, list[dict[str, Any]]]]:
    app, seen = fake_targets()
    with live_server(app) as server:
        yield ModeServer(server.url), seen
