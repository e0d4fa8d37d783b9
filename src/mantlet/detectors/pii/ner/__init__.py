"""Named-entity backends for PII: one module and one model per language.

Each module exposes ``load() -> NerBackend``; adding a language is one more
module and one line in ``_MODULES``. A backend's name is its language,
optionally followed by the kind of model (``en_spacy``): the plain language
name is that language's default. Backends report spans already mapped to
Mantlet's entity names (``ENTITIES``) and load their model only when asked.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from mantlet.errors import ConfigError, DetectorError

# What a backend may report: names, places, organizations, and whole postal
# addresses (a town inside an address belongs to the address).
ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION", "STREET_ADDRESS")

_MODULES: dict[str, str] = {
    # A CRF: about 0.15 ms a message, no extra dependency.
    "en": "mantlet.detectors.pii.ner.en_crf",
    # spaCy's small model, fine-tuned: about 2 ms a message (mantlet[pii]).
    "en_spacy": "mantlet.detectors.pii.ner.en_spacy",
}


class NerSpan(NamedTuple):
    start: int
    end: int
    label: str  # one of ENTITIES
    score: float


class NerBackend(Protocol):
    language: str
    model_id: str

    def entities(self, text: str, scope: str = "") -> list[NerSpan]:
        """Entities of one text; ``scope`` (a tenant) keeps cached results
        from being shared, and so timed, across callers."""

    def clear_cache(self) -> None:
        """Forget cached per-text results (benchmarks time the model, not a cache)."""

    def entities_many(self, texts: Sequence[str]) -> list[list[NerSpan]]: ...


def languages() -> list[str]:
    return sorted(_MODULES)


def known_backend(name: str | None) -> str | None:
    """``name`` if it names a backend (or is None); settings validators call
    this so a typo fails where the setting is read, loading nothing."""
    if name is not None and name not in _MODULES:
        raise ValueError(f"unknown NER backend {name!r}; available: {languages()}")
    return name


_lock = threading.Lock()


def load_backend(language: str) -> NerBackend:
    """The backend for ``language``, loaded (and its model verified) once per process."""
    if language not in _MODULES:
        raise ConfigError(f"no NER backend for language {language!r}; available: {languages()}")
    with _lock:
        return _load(language)


@functools.cache
def _load(language: str) -> NerBackend:
    try:
        module = importlib.import_module(_MODULES[language])
    except ImportError as exc:
        raise DetectorError(
            f"NER for {language!r} needs the 'pii' extra (pip install 'mantlet[pii]'): "
            f"{type(exc).__name__}"
        ) from None
    backend: NerBackend = module.load()
    return backend
