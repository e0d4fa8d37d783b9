"""Upstream providers, one module per kind, all behind ``Provider``."""

from mantlet.gateway.providers.base import (
    Endpoint,
    Provider,
    ProviderError,
    UpstreamRefused,
    build_provider,
)

__all__ = ["Endpoint", "Provider", "ProviderError", "UpstreamRefused", "build_provider"]
