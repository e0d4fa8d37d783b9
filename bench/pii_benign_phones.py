"""Phone-number findings on benign texts: prompts, code questions, documents
and user messages from ``../shared/datasets`` with no phone number meant in
them (the odd real one, "(123) 456-7891" in an example, is counted too).
Each text with a PHONE_NUMBER finding at the policy's threshold counts once.

    python bench/pii_benign_phones.py [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mantlet.core.types import ScanContext
from mantlet.detectors.pii import PiiDetector, PiiOptions

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SETS = ("benign_code_prompts", "benign_prompts", "benign_documents", "benign_user_prompts")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    detector = PiiDetector(PiiOptions(ner=None))
    report: dict[str, dict[str, object]] = {}
    for name in SETS:
        texts = flagged = 0
        examples: list[str] = []
        for line in (DATASETS / name / "data.jsonl").open(encoding="utf-8"):
            text = json.loads(line).get("text") or ""
            texts += 1
            phones = [
                f
                for f in detector.detect(text, ScanContext())
                if f.kind == "PHONE_NUMBER" and f.score >= args.threshold
            ]
            if phones:
                flagged += 1
                examples.append(text[phones[0].start : phones[0].end])
        report[name] = {"texts": texts, "flagged": flagged, "examples": examples[:10]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("| set | texts | with a phone finding |")
    print("| --- | --- | --- |")
    for name, row in report.items():
        print(f"| {name} | {row['texts']} | {row['flagged']} |")
    total = sum(int(str(r["flagged"])) for r in report.values())
    print(f"\ntotal: {total} of {sum(int(str(r['texts'])) for r in report.values())} texts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
