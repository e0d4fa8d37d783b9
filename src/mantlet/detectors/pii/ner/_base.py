"""What the NER backends share: reading a model folder only as bytes that
match digests recorded in code, and the per-scope cache of per-text results."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mantlet.detectors._cache import ScopedCache
from mantlet.detectors.pii.ner import NerSpan
from mantlet.errors import DetectorError


def read_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by relative path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in read_files(root).items()}


def verified_files(root: Path, expected: dict[str, str], model_id: str) -> dict[str, bytes]:
    """The folder's files, once each matches ``expected`` and the folder holds
    no other file. Callers load the model from these bytes, never from the
    folder again: a file swapped after the check is never read."""
    try:
        files = read_files(root)
    except OSError as exc:
        raise DetectorError(f"NER model {model_id} unreadable: {type(exc).__name__}") from None
    found = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    bad = sorted(
        name for name in expected.keys() | found.keys() if found.get(name) != expected.get(name)
    )
    if bad or not expected:
        raise DetectorError(
            f"NER model {model_id} failed its sha256 check: {', '.join(bad) or 'no digests'}"
        )
    return files


class CachedNer:
    """A backend's recent per-text results (offsets and labels only, per
    scope: see ``detectors/_cache.py``).

    Without the cache each chat turn would run the model over all earlier
    messages again; a text's entities depend on that text alone, which is
    what allows it. Subclasses tag one text in ``_tag``.
    """

    def __init__(self, cache_texts: int) -> None:
        self._cache: ScopedCache[tuple[NerSpan, ...]] = ScopedCache(cache_texts)

    @property
    def cache_hits(self) -> int:
        return self._cache.hits

    def entities(self, text: str, scope: str = "") -> list[NerSpan]:
        key = self._cache.key(scope, text.encode("utf-8", "surrogatepass"))
        cached = self._cache.get(key)
        if cached is not None:
            return list(cached)
        spans = self._tag(text)
        self._cache.put(key, tuple(spans))
        return spans

    def clear_cache(self) -> None:
        self._cache.clear()

    def _tag(self, text: str) -> list[NerSpan]:
        raise NotImplementedError
