"""Any OpenAI-compatible HTTP upstream (OpenAI, vLLM, llama.cpp server, ...).

One pooled httpx client per upstream. Retries with exponential backoff only
where a retry cannot duplicate work: connection failures before the request
was sent, and 502/503/504 answers from a proxy in front of the model.

Whole (non-streamed) answers go straight to the client's pooled transport:
``AsyncClient.post`` spends about 150 µs of CPU per call on layers an upstream
call does not use (cookies, auth flows, redirects, URL merging), a fifth of
what the gateway's own work costs. With an HTTP(S)_PROXY or ALL_PROXY
variable set, every call goes through the client, which honours them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from mantlet.gateway.providers.base import (
    REFUSAL_STATUSES,
    Endpoint,
    ProviderError,
    answer_to_chunks,
    refusal,
    strict_json,
)

_RETRY_STATUSES = {502, 503, 504}
_USER_AGENT = "mantlet"
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def _proxy_configured() -> bool:
    return any(os.environ.get(v) or os.environ.get(v.upper()) for v in _PROXY_VARIABLES)


class OpenAICompatibleProvider:
    def __init__(self, settings: Any, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = settings.name
        self._retries = settings.retries
        headers = {"user-agent": _USER_AGENT}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(settings.timeout_s, connect=min(10.0, settings.timeout_s))
        self._base_url = settings.base_url.rstrip("/")
        if transport is None and not _proxy_configured():
            transport = httpx.AsyncHTTPTransport()
        self._direct = transport
        self._direct_headers = {"accept": "application/json", **headers}
        self._timeout = timeout.as_dict()
        self._client = httpx.AsyncClient(
            base_url=self._base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def _post(self, endpoint: Endpoint, body: Mapping[str, Any]) -> httpx.Response:
        if self._direct is None:
            return await self._client.post(f"/{endpoint}", json=body)
        request = httpx.Request(
            "POST",
            f"{self._base_url}/{endpoint}",
            headers=self._direct_headers,
            json=body,
            extensions={"timeout": self._timeout},
        )
        response = await self._direct.handle_async_request(request)
        try:
            await response.aread()  # decodes any content-encoding
        finally:
            await response.aclose()
        return response

    async def send(self, endpoint: Endpoint, request: Mapping[str, Any]) -> dict[str, Any]:
        body = {**request, "stream": False} if endpoint != "embeddings" else dict(request)
        for attempt in range(self._retries + 1):
            try:
                response = await self._post(endpoint, body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self._retries:
                    raise ProviderError(
                        f"upstream {self.name!r} unreachable ({type(exc).__name__})"
                    ) from None
            except httpx.HTTPError as exc:
                raise ProviderError(
                    f"upstream {self.name!r} failed ({type(exc).__name__})"
                ) from None
            else:
                if response.status_code in _RETRY_STATUSES and attempt < self._retries:
                    pass
                elif response.status_code in REFUSAL_STATUSES:
                    retry_after = response.headers.get("retry-after")
                    raise refusal(self.name, response.status_code, response.content, retry_after)
                elif response.status_code >= 400:
                    raise ProviderError(
                        f"upstream {self.name!r} answered HTTP {response.status_code}"
                    )
                else:
                    try:
                        data = strict_json(response.content)
                    except (ValueError, RecursionError):
                        raise ProviderError(f"upstream {self.name!r} sent invalid JSON") from None
                    if not isinstance(data, dict):
                        raise ProviderError(f"upstream {self.name!r} sent an unexpected body")
                    return data
            await asyncio.sleep(0.2 * 2**attempt)
        raise ProviderError(f"upstream {self.name!r} kept failing")

    async def stream(
        self, endpoint: Endpoint, request: Mapping[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """Server-sent events from the upstream, one parsed chunk at a time.
        Connection failures before the first byte are retried like ``send``."""
        body = {**request, "stream": True}
        if endpoint == "chat/completions":
            body["stream_options"] = {"include_usage": True}
        for attempt in range(self._retries + 1):
            try:
                async with self._client.stream("POST", f"/{endpoint}", json=body) as response:
                    if response.status_code in _RETRY_STATUSES and attempt < self._retries:
                        await asyncio.sleep(0.2 * 2**attempt)
                        continue
                    if response.status_code in REFUSAL_STATUSES:
                        content = (await response.aread())[:65536]
                        retry_after = response.headers.get("retry-after")
                        raise refusal(self.name, response.status_code, content, retry_after)
                    if response.status_code >= 400:
                        raise ProviderError(
                            f"upstream {self.name!r} answered HTTP {response.status_code}"
                        )
                    if "json" in response.headers.get("content-type", ""):
                        # The upstream ignored `stream`: a whole answer is fine too.
                        try:
                            answer = strict_json(await response.aread())
                        except (ValueError, RecursionError):
                            raise ProviderError(
                                f"upstream {self.name!r} sent invalid JSON"
                            ) from None
                        if not isinstance(answer, dict):
                            raise ProviderError(f"upstream {self.name!r} sent an unexpected body")
                        for chunk in answer_to_chunks(answer):
                            yield chunk
                        return
                    async for line in response.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        try:
                            chunk = strict_json(data)
                        except (ValueError, RecursionError):
                            raise ProviderError(
                                f"upstream {self.name!r} sent an invalid stream event"
                            ) from None
                        if not isinstance(chunk, dict) or "error" in chunk:
                            raise ProviderError(f"upstream {self.name!r} reported a stream error")
                        yield chunk
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self._retries:
                    raise ProviderError(
                        f"upstream {self.name!r} unreachable ({type(exc).__name__})"
                    ) from None
                await asyncio.sleep(0.2 * 2**attempt)
            except httpx.HTTPError as exc:
                raise ProviderError(
                    f"upstream {self.name!r} failed ({type(exc).__name__})"
                ) from None
        raise ProviderError(f"upstream {self.name!r} kept failing")

    async def aclose(self) -> None:
        await self._client.aclose()  # closes the shared transport too
