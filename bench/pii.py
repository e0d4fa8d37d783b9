"""Mantlet's PII detector against Microsoft Presidio, side by side.

Same texts, same run, same machine, same matching (Mantlet's span metrics,
one-to-one, exact and overlap). Mantlet runs with each of its English NER
backends: ``en``, the CRF (the default), and ``en_spacy``, the fine-tuned
spaCy model (rows ``mantlet_spacy*``). Presidio runs offline in four setups:
its usual one (spaCy ``en_core_web_sm`` 3.8, the whole pipeline), with the
spaCy model Mantlet ships (``en_core_web_sm`` with its NER fine-tuned by
``tools/train_ner.py``; tokenizer and NER only), with Mantlet's CRF as a
Presidio recognizer over its patterns-only engine, and patterns-only
(``spacy.blank``, its fastest). ORG is mapped to ORGANIZATION and not ignored.

Data, only what no shipped model was trained on: ``pii_presidio_synth``'s
odd-numbered templates (never inspected while the rule table was written; the
NER model trains on the even ones) for every entity, all of it for the
structured entities, and ``pii_wikigold``'s odd-numbered documents (names,
places, organizations; the NER model trains on the even ones). Only entities
both systems name are scored; gold ``GPE`` counts as LOCATION.

Throughput: this machine is shared, so each system's figure is its best of
``--rounds`` passes over the same sample of ``--sample`` texts, the systems
taking turns (round-robin) so that background load hits them alike.

    OMP_NUM_THREADS=1 python bench/pii.py [--limit N] [--sample 500] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mantlet.core.types import ScanContext
from mantlet.detectors.pii import PiiDetector, PiiOptions
from mantlet.detectors.pii.ner import load_backend
from mantlet.evaluation.metrics import Span, span_report

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets"
STRUCTURED = ("CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER", "US_SSN")
NAMES = ("PERSON", "LOCATION", "ORGANIZATION")
ANY_NAME = "NAME_ANY_TYPE"
NER_BACKENDS = ("en", "en_spacy")  # the CRF (the default) and the fine-tuned spaCy model
ALIASES = {"GPE": "LOCATION", "LOC": "LOCATION", "PER": "PERSON", "ORG": "ORGANIZATION"}
Row = dict[str, Any]
Predict = Callable[[Sequence[str]], list[list[Span]]]


def load(name: str, limit: int | None = None) -> list[Row]:
    rows = [json.loads(line) for line in (DATASETS / name / "data.jsonl").open(encoding="utf-8")]
    return rows[:limit] if limit else rows


def gold(rows: Sequence[Row], entities: Sequence[str]) -> list[list[Span]]:
    out = []
    for row in rows:
        spans = (
            Span(s["start"], s["end"], ALIASES.get(s["label"], s["label"])) for s in row["spans"]
        )
        out.append([s for s in spans if s.label in entities])
    return out


def mantlet_per_text(detector: PiiDetector) -> Predict:
    context = ScanContext()

    def run(texts: Sequence[str]) -> list[list[Span]]:
        return [
            [Span(f.start, f.end, f.kind) for f in detector.detect(t, context) if f.score >= 0.5]
            for t in texts
        ]

    return run


def mantlet_batched(detector: PiiDetector) -> Predict:
    def run(texts: Sequence[str]) -> list[list[Span]]:
        return [
            [Span(f.start, f.end, f.kind) for f in found if f.score >= 0.5]
            for found in detector.detect_many(texts)
        ]

    return run


def presidio(model: str, threshold: float = 0.0, batched: bool = False) -> Predict:
    """``model``: "stock" (en_core_web_sm, whole pipeline), "shipped" (Mantlet's
    spaCy NER model), "crf" (patterns, plus Mantlet's CRF NER as a Presidio
    recognizer) or "none" (patterns only); ``batched``: Presidio's own batch
    engine (spaCy's ``pipe`` over 64 texts), against Mantlet's batched row."""
    import spacy
    import tldextract
    from presidio_analyzer import (
        AnalyzerEngine,
        BatchAnalyzerEngine,
        EntityRecognizer,
        RecognizerRegistry,
        RecognizerResult,
    )
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    from mantlet.detectors.pii.ner.en_spacy import base_model_dir, model_dir

    # Offline: Presidio's e-mail recognizer would download the public-suffix list.
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())

    ner_config = NerModelConfiguration(
        model_to_presidio_entity_mapping={
            "PERSON": "PERSON",
            "PER": "PERSON",
            "GPE": "LOCATION",
            "LOC": "LOCATION",
            "FAC": "LOCATION",
            "ORG": "ORGANIZATION",
            "NORP": "NRP",
            "DATE": "DATE_TIME",
            "TIME": "DATE_TIME",
        },
        labels_to_ignore=["CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL", "PERCENT"],
    )

    class OfflineEngine(SpacyNlpEngine):  # type: ignore[misc]
        def load(self) -> None:
            folders = {"stock": base_model_dir(), "shipped": model_dir()}
            self.nlp = {"en": spacy.load(folders[model]) if model in folders else spacy.blank("en")}

    engine = OfflineEngine(ner_model_configuration=ner_config)
    engine.load()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=engine)
    if model in ("none", "crf"):
        registry.remove_recognizer("SpacyRecognizer")
    if model == "crf":
        crf = load_backend("en")

        class CrfRecognizer(EntityRecognizer):  # type: ignore[misc]
            def load(self) -> None:
                pass

            def analyze(self, text: str, entities: Any, nlp_artifacts: Any) -> list[Any]:
                return [
                    RecognizerResult(s.label, s.start, s.end, s.score)
                    for s in crf.entities(text)
                    if s.label in NAMES
                ]

        registry.add_recognizer(CrfRecognizer(supported_entities=list(NAMES), name="MantletCrf"))
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])

    def run(texts: Sequence[str]) -> list[list[Span]]:
        out = []
        for text in texts:
            results = analyzer.analyze(text=text, language="en", score_threshold=threshold)
            out.append([Span(r.start, r.end, r.entity_type) for r in results])
        return out

    def run_batched(texts: Sequence[str]) -> list[list[Span]]:
        batch = BatchAnalyzerEngine(analyzer_engine=analyzer)
        found = batch.analyze_iterator(
            list(texts), language="en", batch_size=64, score_threshold=threshold
        )
        return [[Span(r.start, r.end, r.entity_type) for r in results] for results in found]

    return run_batched if batched else run


def timed(predict: Predict, texts: Sequence[str]) -> float:
    # Every pass starts cold: the NER backends cache per-text results, and a
    # second pass over the same texts would time those instead of the model.
    for backend in NER_BACKENDS:
        load_backend(backend).clear_cache()
    started = time.perf_counter()
    predict(texts)
    return time.perf_counter() - started


def score(
    gold_spans: list[list[Span]], found: list[list[Span]], entities: Sequence[str]
) -> dict[str, dict[str, float]]:
    predicted = [[s for s in spans if s.label in entities] for spans in found]
    report = span_report(gold_spans, predicted)
    table: dict[str, dict[str, float]] = {}
    for entity in entities:
        row = {}
        for mode in ("exact", "overlap"):
            scores = report[mode]["per_label"].get(entity)
            row[mode] = round(scores["f1"], 3) if scores else float("nan")
        table[entity] = row
    for mode in ("exact", "overlap"):
        micro = span_report(gold_spans, predicted)[mode]["micro"]
        table.setdefault("micro", {})[mode] = round(micro["f1"], 3)
    if set(NAMES) <= set(entities):
        # What redaction needs: a name, place or organization found, whatever
        # the type (a town labelled an organization is still redacted).
        def merged(spans: list[list[Span]]) -> list[list[Span]]:
            return [
                [Span(s.start, s.end, ANY_NAME) for s in row if s.label in NAMES] for row in spans
            ]

        report = span_report(merged(gold_spans), merged(predicted))
        table[ANY_NAME] = {
            mode: round(report[mode]["per_label"].get(ANY_NAME, {"f1": 0.0})["f1"], 3)
            for mode in ("exact", "overlap")
        }
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="Rows per dataset.")
    parser.add_argument("--sample", type=int, default=500, help="Texts timed per suite.")
    parser.add_argument("--rounds", type=int, default=3, help="Timed passes (best counts).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    synth = load("pii_presidio_synth", args.limit)
    wiki = load("pii_wikigold", args.limit)
    suites = {
        "synth_heldout": ([r for r in synth if r["template_id"] % 2 == 1], (*STRUCTURED, *NAMES)),
        "synth_structured": (synth, STRUCTURED),
        "wikigold_heldout": ([r for r in wiki if r["doc"] % 2 == 1], NAMES),
    }
    systems: dict[str, Predict] = {
        "mantlet": mantlet_per_text(PiiDetector(PiiOptions(ner="en"))),
        "mantlet_batched": mantlet_batched(PiiDetector(PiiOptions(ner="en"))),
        "mantlet_spacy": mantlet_per_text(PiiDetector(PiiOptions(ner="en_spacy"))),
        "mantlet_spacy_batched": mantlet_batched(PiiDetector(PiiOptions(ner="en_spacy"))),
        "mantlet_structured_only": mantlet_per_text(PiiDetector()),
        "presidio": presidio("stock"),
        "presidio_batched": presidio("stock", batched=True),
        "presidio_mantlet_ner": presidio("shipped"),
        "presidio_mantlet_crf": presidio("crf"),
        "presidio_patterns_only": presidio("none"),
    }
    results: dict[str, Any] = {}
    for suite, (rows, entities) in suites.items():
        texts = [r["text"] for r in rows]
        chars = sum(len(t) for t in texts)
        golds = gold(rows, entities)
        sample = texts[: args.sample]
        sample_chars = sum(len(t) for t in sample)
        results[suite] = {
            "texts": len(texts),
            "chars": chars,
            "timed_texts": len(sample),
            "systems": {},
        }
        for name, predict in systems.items():
            print(f"{suite}: {name} quality ...", file=sys.stderr)
            results[suite]["systems"][name] = {"f1": score(golds, predict(texts), entities)}
        best = dict.fromkeys(systems, float("inf"))
        for round_ in range(args.rounds):
            print(f"{suite}: timing round {round_ + 1}/{args.rounds} ...", file=sys.stderr)
            for name, predict in systems.items():
                best[name] = min(best[name], timed(predict, sample))
        for name in systems:
            results[suite]["systems"][name].update(
                {
                    "chars_per_s": round(sample_chars / best[name]),
                    "texts_per_s": round(len(sample) / best[name], 1),
                }
            )
        base = results[suite]["systems"]["presidio"]["chars_per_s"]
        for name in systems:
            entry = results[suite]["systems"][name]
            entry["speedup_vs_presidio"] = round(entry["chars_per_s"] / base, 2)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        render(results)
    return 0


def render(results: dict[str, Any]) -> None:
    for suite, data in results.items():
        print(
            f"\n## {suite}: {data['texts']} texts, {data['chars']} chars "
            f"(throughput on the first {data['timed_texts']})"
        )
        names = list(data["systems"])
        entities = list(next(iter(data["systems"].values()))["f1"])
        print("| F1 (exact / overlap) | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for entity in entities:
            cells = [
                f"{data['systems'][n]['f1'][entity]['exact']:.3f} / "
                f"{data['systems'][n]['f1'][entity]['overlap']:.3f}"
                for n in names
            ]
            print(f"| {entity} | " + " | ".join(cells) + " |")
        for key in ("chars_per_s", "texts_per_s", "speedup_vs_presidio"):
            print(f"| {key} | " + " | ".join(str(data["systems"][n][key]) for n in names) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
