"""An in-process upstream that answers with the last user message.

It makes the gateway runnable and testable end to end with no model and no
network; it is also the test double for the provider seam.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any


class EchoProvider:
    def __init__(self, name: str = "echo") -> None:
        self.name = name

    async def chat(self, request: Mapping[str, Any]) -> dict[str, Any]:
        messages = request.get("messages") or []
        last: Mapping[str, Any] = next(
            (m for m in reversed(messages) if m.get("role") == "user"), {}
        )
        content = last.get("content", "")
        if isinstance(content, list):
            content = " ".join(
                str(item.get("text", "")) for item in content if isinstance(item, dict)
            )
        text = f"echo: {content}"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len(text.split())
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", self.name),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def aclose(self) -> None:
        return None
