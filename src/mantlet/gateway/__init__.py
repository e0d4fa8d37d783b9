"""The application layer: an OpenAI-compatible, zero-trust gateway in front of
any LLM. Every request is authenticated (API keys), authorized (role and
model), checked by the guard pipeline on the way in and on the way out, and
answered in OpenAI's shapes, errors included."""

from mantlet.gateway.app import create_app
from mantlet.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
