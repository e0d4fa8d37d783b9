"""Any OpenAI-compatible HTTP upstream (OpenAI, vLLM, llama.cpp server, ...).

One pooled httpx client per upstream. Retries with exponential backoff only
where a retry cannot duplicate work: connection failures before the request
was sent, and 502/503/504 answers from a proxy in front of the model.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import httpx

from mantlet.gateway.providers.base import Endpoint, ProviderError

_RETRY_STATUSES = {502, 503, 504}


class OpenAICompatibleProvider:
    def __init__(self, settings: Any, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = settings.name
        self._retries = settings.retries
        headers = {}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(10.0, settings.timeout_s)),
            transport=transport,
        )

    async def send(self, endpoint: Endpoint, request: Mapping[str, Any]) -> dict[str, Any]:
        body = {**request, "stream": False} if endpoint != "embeddings" else dict(request)
        for attempt in range(self._retries + 1):
            try:
                response = await self._client.post(f"/{endpoint}", json=body)
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
                elif response.status_code >= 400:
                    raise ProviderError(
                        f"upstream {self.name!r} answered HTTP {response.status_code}"
                    )
                else:
                    try:
                        data = response.json()
                    except ValueError:
                        raise ProviderError(f"upstream {self.name!r} sent invalid JSON") from None
                    if not isinstance(data, dict):
                        raise ProviderError(f"upstream {self.name!r} sent an unexpected body")
                    return data
            await asyncio.sleep(0.2 * 2**attempt)
        raise ProviderError(f"upstream {self.name!r} kept failing")

    async def aclose(self) -> None:
        await self._client.aclose()
