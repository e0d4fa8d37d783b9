"""Entry points for ASGI servers.

``mantlet serve --workers N`` hands the resolved settings to each uvicorn
worker process through ``MANTLET_SETTINGS_JSON`` (settings hold no secrets:
upstream keys are named by environment variable) and each worker builds its
own app with :func:`app_from_environment`.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from mantlet.gateway.app import create_app
from mantlet.gateway.settings import GatewaySettings

SETTINGS_VARIABLE = "MANTLET_SETTINGS_JSON"


def configure_access_log() -> None:
    """One JSON line per request on stderr (no bodies, no keys)."""
    access = logging.getLogger("mantlet.gateway.access")
    if access.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def app_from_environment() -> FastAPI:
    configure_access_log()
    settings = GatewaySettings.model_validate_json(os.environ[SETTINGS_VARIABLE])
    return create_app(settings)
