"""The one seam every upstream implements: send a request to an endpoint, close."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Literal, Protocol

from mantlet.core.jsontext import has_lone_surrogate
from mantlet.errors import MantletError


class ProviderError(MantletError):
    """The upstream failed or was unreachable; the caller sees a 502."""

    status = 502


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(data: str | bytes) -> Any:
    """``json.loads`` without the NaN and Infinity that Python accepts and
    JSON does not (they could not be canonicalised for the audit log), nor
    lone surrogate escapes (no detector or client could encode them)."""
    parsed = json.loads(data, parse_constant=_no_constant)
    if has_lone_surrogate(data, parsed):
        raise ValueError("a lone UTF-16 surrogate escape")
    return parsed


class UpstreamRefused(ProviderError):
    """The upstream answered that the request itself is wrong for it (HTTP
    400, 404, 413, 422) or that it is over its own rate limit (429): the
    caller's to fix or wait out, so it gets that status, not a 502 that its
    SDK would retry at once. ``code`` and ``message`` are the upstream's."""

    def __init__(
        self, upstream: str, status: int, error: Any, retry_after: str | None = None
    ) -> None:
        error = error if isinstance(error, dict) else {}
        code, message = error.get("code"), error.get("message")
        self.upstream_status = status
        self.retry_after = retry_after if retry_after and retry_after.isdigit() else None
        self.code = code if isinstance(code, str) and len(code) <= 64 else None
        self.upstream_message = message[:500] if isinstance(message, str) else ""
        super().__init__(f"upstream {upstream!r} refused the request (HTTP {status})")


# Upstream statuses that are about the request, not the upstream's health.
REFUSAL_STATUSES = frozenset({400, 404, 413, 422, 429})


def refusal(
    upstream: str, status: int, body: bytes, retry_after: str | None = None
) -> UpstreamRefused:
    """An ``UpstreamRefused`` from an error response's body (OpenAI's shape,
    ``{"error": {"message", "code", ...}}``, or anything else)."""
    try:
        data = strict_json(body)
    except (ValueError, RecursionError):
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    return UpstreamRefused(upstream, status, error, retry_after)


Endpoint = Literal["chat/completions", "completions", "embeddings"]


class Provider(Protocol):
    name: str

    async def send(self, endpoint: Endpoint, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send an OpenAI request body (never streaming) to ``endpoint``; return the
        response body, or raise ``ProviderError``."""
        ...

    async def aclose(self) -> None: ...


class StreamingProvider(Provider, Protocol):
    """A provider that can also stream: yields OpenAI chunk objects
    (``chat.completion.chunk`` or ``text_completion``), raising
    ``ProviderError`` if the upstream fails."""

    def stream(
        self, endpoint: Endpoint, request: Mapping[str, Any]
    ) -> AsyncIterator[dict[str, Any]]: ...


async def stream_chunks(
    provider: Provider, endpoint: Endpoint, request: Mapping[str, Any]
) -> AsyncGenerator[dict[str, Any], None]:
    """Chunks from a streaming provider, or a finished answer cut into the
    chunks a stream would have carried (so every provider can serve
    ``stream: true``)."""
    stream = getattr(provider, "stream", None)
    if stream is not None:
        async for chunk in stream(endpoint, request):
            yield chunk
        return
    answer = await provider.send(endpoint, {**request, "stream": False})
    for chunk in answer_to_chunks(answer):
        yield chunk


def answer_to_chunks(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    base = {k: answer[k] for k in ("id", "created", "model") if k in answer}
    chat = answer.get("object") != "text_completion"
    base["object"] = "chat.completion.chunk" if chat else "text_completion"
    chunks: list[dict[str, Any]] = []
    for choice in answer.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        if chat:
            message = choice.get("message") or {}
            delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
            if message.get("tool_calls"):
                delta["tool_calls"] = [
                    {**call, "index": i} for i, call in enumerate(message["tool_calls"])
                ]
            part: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": None}
        else:
            part = {"index": index, "text": choice.get("text", ""), "finish_reason": None}
        chunks.append({**base, "choices": [part]})
        end: dict[str, Any] = {"index": index, "finish_reason": choice.get("finish_reason")}
        if chat:
            end["delta"] = {}
        else:
            end["text"] = ""
        chunks.append({**base, "choices": [end]})
    if isinstance(answer.get("usage"), dict):
        chunks.append({**base, "choices": [], "usage": answer["usage"]})
    if chunks and "mantlet_watermark" in answer:
        chunks[0]["mantlet_watermark"] = answer["mantlet_watermark"]
    return chunks


def build_provider(settings: Any) -> Provider:
    """Provider for an ``UpstreamSettings``; adding a kind is one module and one line."""
    if settings.kind == "echo":
        from mantlet.gateway.providers.echo import EchoProvider

        return EchoProvider(settings.name)
    if settings.kind == "local":
        from mantlet.gateway.providers.local_gguf import LocalGGUFProvider

        return LocalGGUFProvider(settings)
    from mantlet.gateway.providers.openai_compatible import OpenAICompatibleProvider

    return OpenAICompatibleProvider(settings)
