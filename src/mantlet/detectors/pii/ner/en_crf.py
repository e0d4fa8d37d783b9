"""English names, places, organizations and postal addresses: Mantlet's own
linear-chain CRF (CRFsuite through python-crfsuite), built by
``tools/train_ner_crf.py`` (``make train-ner-crf``) and shipped in
``model_en_crf/``.

Why a CRF when ``en_spacy`` exists: it tags a chat message in about 0.2 ms
against spaCy's 1.5-2 ms, loads in well under a second instead of several,
and needs no spaCy, at about the same F1 as the fine-tuned spaCy model
(docs/pii.md has both, measured on the same held-out texts). Every file of
the shipped folder must match a digest recorded here, and the folder may
hold no other file; the model is loaded from the very bytes that were
checked (``_base.verified_files``).
"""

from __future__ import annotations

import functools
import gzip
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mantlet.detectors.pii.ner import NerSpan
from mantlet.detectors.pii.ner._base import CachedNer, digests, verified_files
from mantlet.detectors.pii.ner.crf_features import (
    chunks,
    entity_runs,
    features,
    read_gazetteer,
    split_at_lines,
    tokens,
)
from mantlet.detectors.pii.ner.technical import drop_technical_names
from mantlet.errors import DetectorError

MODEL_ID = "mantlet_ner_en_crf 1.0.0 (CRFsuite)"
MODEL_FILE = "model.crfsuite"
GAZETTEER_FILE = "gazetteer.tsv.gz"
# sha256 of every file in model_en_crf/ (tools/train_ner_crf.py prints them).
SHA256: dict[str, str] = {
    "gazetteer.tsv.gz": "61ae559487478ee0a77a9fef11e53273f340870504b202b99cd94481b0fdf462",
    "model.crfsuite": "b7567e8d2cf24e4dad25174d13d75b21f4fefcd97f21a293e541baccec30b5f2",
}
# The model's own tags -> Mantlet's entities.
LABELS = {
    "PER": "PERSON",
    "LOC": "LOCATION",
    "ORG": "ORGANIZATION",
    "ADDR": "STREET_ADDRESS",
}
CACHE_TEXTS = 4096  # recent texts whose entities are kept (offsets and labels only)
_STRIP = " \t\n\"'`.,;:!?()[]{}"
# Gazetteer tags of people's and places' names: such a language name ("Julia",
# "Ruby", "Crystal") is kept, technical text or not.
_NAME_TAGS = frozenset({"g:fn", "g:ln", "g:ci", "g:co"})


def model_dir() -> Path:
    return Path(__file__).resolve().parent / "model_en_crf"


def verify(root: Path, expected: dict[str, str] | None = None) -> dict[str, bytes]:
    """The folder's files, once each matches its recorded sha256."""
    return verified_files(root, SHA256 if expected is None else expected, MODEL_ID)


class CrfNer(CachedNer):
    """The tagger behind a lock (a CRFsuite tagger keeps the last sequence's
    state for its marginals), with a cache of recent per-text results."""

    language = "en"
    model_id = MODEL_ID

    def __init__(
        self,
        tagger: Any,
        gazetteer: dict[str, tuple[str, ...]],
        cache_texts: int = CACHE_TEXTS,
        model_bytes: bytes | None = None,
    ) -> None:
        super().__init__(cache_texts)
        # CRFsuite reads a model opened in memory from the caller's buffer
        # without copying it: the bytes must live as long as the tagger.
        self._model_bytes = model_bytes
        self._tagger = tagger
        self._gazetteer = gazetteer
        self._lock = threading.Lock()

    def entities_many(self, texts: Sequence[str]) -> list[list[NerSpan]]:
        return [self._tag(text) for text in texts]

    def _tag(self, text: str) -> list[NerSpan]:
        toks = tokens(text)
        out: list[NerSpan] = []
        for begin, end in chunks(text, toks):
            part = toks[begin:end]
            attrs = features(text, part, self._gazetteer)
            with self._lock:
                tags = self._tagger.tag(attrs)
                runs = [
                    (first, last, label, _mean_marginal(self._tagger, tags, first, last))
                    for first, last, label in split_at_lines(text, part, entity_runs(tags))
                ]
            for first, last, label, score in runs:
                span = _trimmed(text, part[first][0], part[last][1], LABELS.get(label), score)
                if span is not None:
                    out.append(span)
        return drop_technical_names(text, out, self.known_name)

    def known_name(self, word: str) -> bool:
        return known_name(self._gazetteer, word)


def known_name(gazetteer: dict[str, tuple[str, ...]], word: str) -> bool:
    """Whether ``gazetteer`` knows ``word`` (lower case) as a first or last
    name, a town or a country."""
    return bool(_NAME_TAGS.intersection(gazetteer.get(word, ())))


@functools.cache
def shipped_gazetteer() -> dict[str, tuple[str, ...]]:
    """The shipped folder's gazetteer, checked like the model, for a backend
    without one of its own (``en_spacy``'s technical-name filter)."""
    files = verify(model_dir())
    return read_gazetteer(gzip.decompress(files[GAZETTEER_FILE]).decode("utf-8").splitlines())


def _mean_marginal(tagger: Any, tags: Sequence[str], first: int, last: int) -> float:
    """The span's score: the mean probability of its tokens' tags. A value
    the arithmetic could not give (NaN) scores 1.0: the tagger did find the
    span, and a score must not be what lets it through."""
    total = sum(tagger.marginal(tags[i], i) for i in range(first, last + 1))
    score = float(total / (last - first + 1))
    return min(1.0, max(0.0, score)) if math.isfinite(score) else 1.0


def _trimmed(text: str, start: int, end: int, label: str | None, score: float) -> NerSpan | None:
    if label is None:
        return None
    if text[start:end].endswith(("'s", "’s")):  # a possessive the tagger let in
        end -= 2
    while start < end and text[start] in _STRIP:
        start += 1
    while end > start and text[end - 1] in _STRIP:
        end -= 1
    if end <= start:
        return None
    if end < len(text) and text[end] == "." and _abbreviation(text[start:end]):
        end += 1  # "Acme Inc.", "Proastiakos S.A.": the period is part of the name
    return NerSpan(start, end, label, round(score, 4))


_ABBREVIATIONS = frozenset({"inc", "ltd", "co", "corp", "bros", "jr", "sr", "plc", "st", "dr"})


def _abbreviation(name: str) -> bool:
    """Whether the name's last word is an abbreviation that ends in a period:
    a known one (Inc, Ltd, Jr...) or initials with inner periods (S.A, U.S)."""
    last = name.rsplit(None, 1)[-1]
    return last.lower() in _ABBREVIATIONS or ("." in last and len(last) <= 8 and last[0].isupper())


def load(root: Path | None = None) -> CrfNer:
    files = verify(model_dir() if root is None else root)
    import pycrfsuite

    tagger = pycrfsuite.Tagger()
    try:
        tagger.open_inmemory(files[MODEL_FILE])
        lexicon = gzip.decompress(files[GAZETTEER_FILE]).decode("utf-8")
    except (OSError, ValueError, KeyError) as exc:
        raise DetectorError(f"NER model {MODEL_ID} unreadable: {type(exc).__name__}") from None
    return CrfNer(tagger, read_gazetteer(lexicon.splitlines()), model_bytes=files[MODEL_FILE])


if __name__ == "__main__":  # pragma: no cover - prints digests to record above
    for name, digest in digests(model_dir()).items():
        print(f'    "{name}": "{digest}",')
