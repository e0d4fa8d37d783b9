"""The one seam every upstream implements: send a request to an endpoint, close."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from mantlet.errors import MantletError


class ProviderError(MantletError):
    """The upstream failed or was unreachable; the caller sees a 502."""

    status = 502


Endpoint = Literal["chat/completions", "completions", "embeddings"]


class Provider(Protocol):
    name: str

    async def send(self, endpoint: Endpoint, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send an OpenAI request body (never streaming) to ``endpoint``; return the
        response body, or raise ``ProviderError``."""
        ...

    async def aclose(self) -> None: ...


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
