"""The autoload_urls output detector over every labelled text in
``../shared/datasets``: findings per kind on the benign rows (label 0, all
false alarms when they are data URLs) and on the attack rows, and speed.

    python bench/autoload_urls.py [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from mantlet.core.registry import create
from mantlet.core.types import ScanContext, Side

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATASETS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    detector = create("autoload_urls")
    context = ScanContext(side=Side.OUTPUT)
    rows = {0: 0, 1: 0}
    found: dict[int, Counter[str]] = {0: Counter(), 1: Counter()}
    chars, seconds = 0, 0.0
    for path in sorted(args.data.glob("*/data.jsonl")):
        for line in path.open(encoding="utf-8"):
            row = json.loads(line)
            label = row.get("label", 0)
            if "text" not in row or label not in rows:
                continue
            rows[label] += 1
            chars += len(row["text"])
            started = time.perf_counter()
            findings = detector.detect(row["text"], context)
            seconds += time.perf_counter() - started
            found[label].update(f.kind for f in findings)
    report = {
        "rows": {"benign": rows[0], "attack": rows[1]},
        "findings": {"benign": dict(found[0]), "attack": dict(found[1])},
        "chars": chars,
        "seconds": round(seconds, 3),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"benign rows {rows[0]:,}: {dict(found[0]) or 'no findings'}")
    print(f"attack rows {rows[1]:,}: {dict(found[1]) or 'no findings'}")
    print(f"{chars:,} characters in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
