"""An in-process upstream that answers with the last user message.

It makes the gateway runnable and testable end to end with no model and no
network; it is also the test double for the provider seam. Embeddings are a
deterministic hash of the text (useless for search, fine for plumbing).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from mantlet.gateway.providers.base import Endpoint, ProviderError

_DIMENSIONS = 16


def _usage(prompt: str, completion: str = "") -> dict[str, int]:
    prompt_tokens, completion_tokens = len(prompt.split()), len(completion.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(i.get("text", "")) for i in content if isinstance(i, dict))
    return str(content or "")


class EchoProvider:
    def __init__(self, name: str = "echo") -> None:
        self.name = name

    async def send(self, endpoint: Endpoint, request: Mapping[str, Any]) -> dict[str, Any]:
        model = request.get("model", self.name)
        if endpoint == "chat/completions":
            messages = request.get("messages") or []
            last: Mapping[str, Any] = next(
                (m for m in reversed(messages) if m.get("role") == "user"), {}
            )
            text = f"echo: {_text_of(last.get('content'))}"
            prompt = " ".join(_text_of(m.get("content")) for m in messages)
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(prompt, text),
            }
        if endpoint == "completions":
            prompts = request.get("prompt", "")
            prompts = prompts if isinstance(prompts, list) else [prompts]
            texts = [f"echo: {p}" for p in prompts]
            choices = [
                {"index": i, "text": text, "finish_reason": "stop", "logprobs": None}
                for i, text in enumerate(texts)
            ]
            return {
                "id": f"cmpl-{uuid.uuid4().hex[:24]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": choices,
                "usage": _usage(" ".join(map(str, prompts)), " ".join(texts)),
            }
        if endpoint == "embeddings":
            inputs = request.get("input", "")
            inputs = inputs if isinstance(inputs, list) else [inputs]
            data = [
                {"object": "embedding", "index": i, "embedding": _vector(str(text))}
                for i, text in enumerate(inputs)
            ]
            return {
                "object": "list",
                "data": data,
                "model": model,
                "usage": _usage(" ".join(map(str, inputs))),
            }
        raise ProviderError(f"upstream {self.name!r} does not serve {endpoint}")

    async def stream(
        self, endpoint: Endpoint, request: Mapping[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """The answer in small pieces, as a model would stream it (tests use
        this to split secrets across chunks)."""
        from mantlet.gateway.providers.base import answer_to_chunks

        answer = await self.send(endpoint, request)
        size = max(1, int(request.get("echo_chunk_chars", 3) or 3))
        for chunk in answer_to_chunks(answer):
            choices = chunk.get("choices") or []
            piece = choices[0] if choices else {}
            key = "text" if "text" in piece else "content"
            holder = piece if key == "text" else piece.get("delta", {})
            text = holder.get(key) or ""
            if len(text) <= size:
                yield chunk
                continue
            for start in range(0, len(text), size):
                part = {**holder, key: text[start : start + size]}
                if start and key == "content":
                    part.pop("role", None)
                    part.pop("tool_calls", None)
                choice = {**piece, key: part[key]} if key == "text" else {**piece, "delta": part}
                yield {**chunk, "choices": [choice]}

    async def aclose(self) -> None:
        return None


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [(b - 127.5) / 127.5 for b in digest[:_DIMENSIONS]]
