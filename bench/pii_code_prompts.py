"""Names where there are none: benign coding prompts with a PERSON, LOCATION
or ORGANIZATION finding, per English NER backend.

A coding assistant's prompts name languages, frameworks, formats and
algorithms ("JavaScript", "Fibonacci"); a news-trained model takes many of
them for organizations, places or people, and with `ner` on they would be
redacted. Data: ``benign_code_prompts`` (1,200 prompts; CC BY-NC, so never
trained on by a shipped model, evaluation only). A finding counts at the
policy threshold (0.5); STREET_ADDRESS is left out (bench/pii_addresses.py).

``--generated N`` adds N technical sentences of Mantlet's own
(``tools/ner_synthetic.generate_tech``: languages, frameworks, tools,
formats and algorithms; a fifth also name a real-looking person, company or
town, labelled): the share with a false name, and the recall of the labelled
names, so dropping technical words cannot hide dropping real names.

    python bench/pii_code_prompts.py [--backend en --backend en_spacy] [--generated 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from mantlet.detectors.pii.ner import load_backend
from pii import NAMES, load  # bench/pii.py, beside this script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", help="NER backends (default: both).")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--generated", type=int, default=0, help="own technical sentences")
    args = parser.parse_args()

    texts = [r["text"] for r in load("benign_code_prompts")]
    results: dict[str, Any] = {}
    for name in args.backend or ["en", "en_spacy"]:
        backend = load_backend(name)
        flagged = 0
        kinds: Counter[str] = Counter()
        for spans in backend.entities_many(texts):
            names = [s for s in spans if s.label in NAMES and s.score >= 0.5]
            flagged += bool(names)
            kinds.update(s.label for s in names)
        results[name] = {
            "texts": len(texts),
            "with_a_name": flagged,
            "share": round(flagged / len(texts), 3),
            "findings": dict(kinds),
        }
        if args.generated:
            results[name]["generated"] = generated(backend, args.generated)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| backend | prompts with a name finding | PERSON | LOCATION | ORGANIZATION |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        counts = " | ".join(str(r["findings"].get(kind, 0)) for kind in NAMES)
        print(f"| {name} | {r['with_a_name']} / {r['texts']} ({r['share']:.1%}) | {counts} |")
    for name, r in results.items():
        if "generated" in r:
            print(f"{name}, generated technical sentences: {json.dumps(r['generated'])}")
    return 0


def generated(backend: Any, count: int) -> dict[str, Any]:
    """False names and recall of the labelled names on own technical sentences."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from ner_synthetic import generate_tech

    aliases = {"PER": "PERSON", "ORG": "ORGANIZATION", "LOC": "LOCATION", "GPE": "LOCATION"}
    rows = list(generate_tech(count, 4242))
    false = found = labelled = 0
    predictions = backend.entities_many([text for text, _ in rows])
    for (_text, spans), predicted in zip(rows, predictions, strict=True):
        gold = {(a, z) for a, z, label in spans if aliases.get(label, label) in NAMES}
        names = {(s.start, s.end) for s in predicted if s.label in NAMES and s.score >= 0.5}
        false += bool(names - gold)
        found += len(names & gold)
        labelled += len(gold)
    return {
        "texts": len(rows),
        "share_with_a_false_name": round(false / len(rows), 3),
        "labelled_names": labelled,
        "recall_of_labelled_names": round(found / max(labelled, 1), 3),
    }


if __name__ == "__main__":
    raise SystemExit(main())
