"""Targets: any OpenAI-compatible chat endpoint (an app, a raw model, or a
model behind the Mantlet gateway), with bounded concurrency, a request-rate
limit, retries on transient failures and a budget on the number of requests.

``ChatModel`` is the one seam: the runner, the attacker loop and the LLM
judge all talk to a ``ChatModel``; ``HttpChatModel`` is the HTTP one, and the
CLI can wrap an in-process model in the same shape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

__all__ = [
    "BudgetExhausted",
    "ChatModel",
    "HttpChatModel",
    "RateLimiter",
    "Reply",
    "RequestBudget",
]

Status = Literal["ok", "blocked", "error"]
# Error codes with which gateways and providers say "refused by a content filter".
_BLOCK_CODES = ("content_blocked", "content_filter", "content_policy_violation")
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Reply:
    """What the target answered. ``blocked``: a guard refused the request or
    the answer (an HTTP error naming a content filter, or finish_reason
    ``content_filter``); ``error``: no answer at all."""

    status: Status
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int | None = None
    http_status: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "text": self.text,
            "finish_reason": self.finish_reason,
            "completion_tokens": self.completion_tokens,
            "http_status": self.http_status,
            "detail": self.detail,
        }


class BudgetExhausted(Exception):
    """The request budget is spent; the run stops sending."""


@dataclass
class RequestBudget:
    """At most ``limit`` requests (``None``: unlimited), shared by every user."""

    limit: int | None = None
    used: int = 0

    def take(self) -> None:
        if self.limit is not None and self.used >= self.limit:
            raise BudgetExhausted
        self.used += 1


@dataclass
class RateLimiter:
    """Spaces request starts at least ``1 / per_second`` apart (``None``: no limit)."""

    per_second: float | None = None
    _next: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def wait(self) -> None:
        if not self.per_second:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + 1.0 / self.per_second
        if delay > 0:
            await asyncio.sleep(delay)


class ChatModel(Protocol):
    label: str

    async def chat(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int, temperature: float
    ) -> Reply: ...

    async def aclose(self) -> None: ...


class HttpChatModel:
    """POST ``{base_url}/chat/completions`` with a bearer key."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        label: str | None = None,
        concurrency: int = 4,
        rate_per_second: float | None = None,
        retries: int = 2,
        timeout_s: float = 120.0,
        budget: RequestBudget | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.label = label or self.base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers, timeout=timeout_s, transport=transport, follow_redirects=False
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._rate = RateLimiter(rate_per_second)
        self._retries = retries
        self.budget = budget or RequestBudget()

    async def chat(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int, temperature: float
    ) -> Reply:
        body = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        self.budget.take()
        async with self._slots:
            for attempt in range(self._retries + 1):
                await self._rate.wait()
                reply = await self._post(body)
                retry = reply.status == "error" and (
                    reply.http_status is None or reply.http_status in _RETRY_STATUS
                )
                if not retry or attempt == self._retries:
                    return reply
                await asyncio.sleep(min(8.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")  # the loop always returns

    async def _post(self, body: dict[str, Any]) -> Reply:
        try:
            response = await self._client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.HTTPError as exc:
            return Reply("error", detail=f"{type(exc).__name__}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code != 200 or not isinstance(data, dict):
            return _error_reply(response.status_code, data)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            return Reply("error", http_status=200, detail="malformed chat completion")
        usage = data.get("usage") or {}
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        status: Status = "blocked" if finish == "content_filter" else "ok"
        return Reply(status, text, finish, tokens if isinstance(tokens, int) else None, 200)

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_reply(status: int, data: Any) -> Reply:
    error = data.get("error") if isinstance(data, dict) else None
    code = str(error.get("code") or "") if isinstance(error, dict) else ""
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    if status in (400, 403) and any(c in code for c in _BLOCK_CODES):
        return Reply("blocked", http_status=status, detail=f"{code}: {message}"[:300])
    return Reply("error", http_status=status, detail=(f"{code}: {message}" if code else "")[:300])
