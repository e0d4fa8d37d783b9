"""Detector registry: every detector is one module that registers a factory
under its name. Modules are imported lazily, on first lookup, so that asking
for the secrets detector never imports an ML runtime."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from mantlet.core.types import Detector
from mantlet.errors import DetectorError, UnknownDetectorError

DetectorFactory = Callable[[Mapping[str, Any]], Detector]

# name -> module that registers it when imported. Adding a detector means
# adding its module and one line here.
_BUILTIN_MODULES: dict[str, str] = {
    "secrets": "mantlet.detectors.secrets",
    "invisible_text": "mantlet.detectors.invisible_text",
    "regex": "mantlet.detectors.regex",
    "injection": "mantlet.detectors.injection",
    "canary": "mantlet.detectors.canary",
    "pii": "mantlet.detectors.pii",
    "autoload_urls": "mantlet.detectors.autoload_urls",
}

_FACTORIES: dict[str, DetectorFactory] = {}


def register(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Decorator for a factory ``options -> Detector``."""

    def decorate(factory: DetectorFactory) -> DetectorFactory:
        _FACTORIES[name] = factory
        return factory

    return decorate


def available() -> list[str]:
    return sorted(set(_BUILTIN_MODULES) | set(_FACTORIES))


def create(name: str, options: Mapping[str, Any] | None = None) -> Detector:
    if name not in _FACTORIES and name in _BUILTIN_MODULES:
        try:
            importlib.import_module(_BUILTIN_MODULES[name])
        except ImportError as exc:
            raise DetectorError(
                f"detector {name!r} cannot be loaded: {type(exc).__name__}: {exc}"
            ) from None
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise UnknownDetectorError(
            f"unknown detector {name!r}; available: {', '.join(available())}"
        ) from None
    return factory(options or {})
