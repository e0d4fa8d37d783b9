"""Upstream providers, one module per kind, all behind ``Provider``."""

from mantlet.gateway.providers.base import Provider, ProviderError, build_provider

__all__ = ["Provider", "ProviderError", "build_provider"]
