"""Names in chat typed without capitals: the PII detector with each English
NER backend (``en``, the CRF; ``en_spacy``), on the held-out texts as written
and lower-cased.

Data: ``pii_presidio_synth``'s odd-numbered templates and ``pii_wikigold``'s
odd-numbered documents (no shipped model was trained on either). Exact-match
precision, recall and F1 at the policy threshold (0.5).

    python bench/pii_lowercase.py [--json]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mantlet.detectors.pii import PiiDetector, PiiOptions
from mantlet.evaluation.metrics import span_report
from pii import NAMES, gold, load, mantlet_batched  # bench/pii.py, beside this script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    suites = {
        "synth_heldout": [r for r in load("pii_presidio_synth") if r["template_id"] % 2 == 1],
        "wikigold_heldout": [r for r in load("pii_wikigold") if r["doc"] % 2 == 1],
    }
    results: dict[str, Any] = {}
    for backend in ("en", "en_spacy"):
        predict = mantlet_batched(PiiDetector(PiiOptions(ner=backend, entities=list(NAMES))))
        for suite, rows in suites.items():
            golds = gold(rows, NAMES)
            # No text of these sets changes length when lower-cased, so the gold
            # offsets still hold.
            for casing, texts in (
                ("as written", [r["text"] for r in rows]),
                ("lower-cased", [r["text"].lower() for r in rows]),
            ):
                found = predict(texts)
                report = span_report(golds, found)["exact"]["per_label"]
                results.setdefault(f"{suite}, {backend}", {})[casing] = {
                    name: {k: round(v, 3) for k, v in report[name].items()} for name in NAMES
                }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| data | text | PERSON P / R / F1 | LOCATION F1 | ORGANIZATION F1 |")
    print("| --- | --- | --- | --- | --- |")
    for suite, by_casing in results.items():
        for casing, scores in by_casing.items():
            person = scores["PERSON"]
            print(
                f"| {suite} | {casing} | {person['precision']:.3f} / {person['recall']:.3f} / "
                f"{person['f1']:.3f} | {scores['LOCATION']['f1']:.3f} | "
                f"{scores['ORGANIZATION']['f1']:.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
