"""The one seam every upstream implements: send a chat request, close."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mantlet.errors import MantletError


class ProviderError(MantletError):
    """The upstream failed or was unreachable; the caller sees a 502."""

    status = 502


class Provider(Protocol):
    name: str

    async def chat(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send an OpenAI chat-completions request body; return the response body."""
        ...

    async def aclose(self) -> None: ...


def build_provider(settings: Any) -> Provider:
    """Provider for an ``UpstreamSettings``; adding a kind is one module and one line."""
    if settings.kind == "echo":
        from mantlet.gateway.providers.echo import EchoProvider

        return EchoProvider(settings.name)
    from mantlet.gateway.providers.openai_compatible import OpenAICompatibleProvider

    return OpenAICompatibleProvider(settings)
