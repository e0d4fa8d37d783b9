"""Street addresses: the rules alone against the rules plus the NER model.

Two figures per setup, at the policy threshold (0.5):

- F1 (exact and overlap) on ``pii_presidio_synth``'s odd-numbered templates,
  which no shipped model was trained on (gold: its STREET_ADDRESS spans);
- how many benign texts (``benign_user_prompts`` and ``benign_documents``,
  which hold no postal addresses worth redacting) get an address reported.

    python bench/pii_addresses.py [--json]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mantlet.detectors.pii import PiiDetector, PiiOptions
from mantlet.evaluation.metrics import Span, span_report
from pii import load  # bench/pii.py, beside this script

KIND = "STREET_ADDRESS"


def addresses(detector: PiiDetector, texts: list[str]) -> list[list[Span]]:
    return [
        [Span(f.start, f.end, KIND) for f in found if f.kind == KIND and f.score >= 0.5]
        for found in detector.detect_many(texts)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    heldout = [r for r in load("pii_presidio_synth") if r["template_id"] % 2 == 1]
    gold = [
        [Span(s["start"], s["end"], KIND) for s in r["spans"] if s["label"] == KIND]
        for r in heldout
    ]
    benign = [r["text"] for name in ("benign_user_prompts", "benign_documents") for r in load(name)]
    results: dict[str, Any] = {}
    # The CRF (`en`) was trained on silver labels of these benign texts, so its
    # benign count is optimistic; `en_spacy` never saw them.
    for name, ner in (("rules", None), ("rules+en_spacy", "en_spacy"), ("rules+en (CRF)", "en")):
        detector = PiiDetector(PiiOptions(ner=ner))
        report = span_report(gold, addresses(detector, [r["text"] for r in heldout]))
        scores = {
            mode: {k: round(v, 3) for k, v in report[mode]["per_label"][KIND].items()}
            for mode in ("exact", "overlap")
        }
        flagged = sum(bool(found) for found in addresses(detector, benign))
        results[name] = {"heldout": scores, "benign_flagged": flagged, "benign_texts": len(benign)}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| setup | F1 exact | F1 overlap | benign texts with an address |")
    print("| --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['heldout']['exact']['f1']:.3f} | {r['heldout']['overlap']['f1']:.3f} "
            f"| {r['benign_flagged']} / {r['benign_texts']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
