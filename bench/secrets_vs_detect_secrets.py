"""Mantlet's secrets detector against Yelp's detect-secrets, side by side.

Same data (the CredSweeper corpus in ../shared/datasets), same matching rules
(Mantlet's own metrics: a file is positive when it has any finding; spans
match when they overlap, label-agnostic, one-to-one), same machine, same run.
Figures are printed for the whole corpus and separately for the "held-out"
half: files whose name hashes odd, which were never looked at while the rule
table was written (the even half served for error analysis).

detect-secrets runs the way its users run it (`SecretsCollection.scan_file`
with its default plugins and filters); its findings carry a line number and
the secret value, which we locate in that line to get a span.

Also prints throughput (MB/s) of both, and Mantlet's time on 1 MB
adversarial inputs (the bound is one second).

    python bench/secrets_vs_detect_secrets.py [--data FILE] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import string
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mantlet.core.registry import create
from mantlet.core.types import ScanContext
from mantlet.evaluation.metrics import Span, classification_report, span_report

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared/datasets/secrets_credsweeper/data.jsonl"
)
Row = dict[str, Any]
Scanner = Callable[[Sequence[Row]], tuple[list[list[Span]], float]]


def held_out(row: Row) -> bool:
    return hashlib.sha256(row["category"].encode()).digest()[0] % 2 == 1


def scan_mantlet(rows: Sequence[Row]) -> tuple[list[list[Span]], float]:
    detector = create("secrets")
    context = ScanContext()
    started = time.perf_counter()
    found = [
        [
            Span(f.start, f.end, f.kind)
            for f in detector.detect(r["text"], context)
            if f.score >= 0.5
        ]
        for r in rows
    ]
    return found, time.perf_counter() - started


def scan_detect_secrets(rows: Sequence[Row]) -> tuple[list[list[Span]], float]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index, row in enumerate(rows):
            # Keep the original file name: detect-secrets picks parsers by extension.
            path = Path(folder) / str(index) / row["category"]
            path.parent.mkdir()
            path.write_text(row["text"], encoding="utf-8")
            paths.append(path)
        results: list[list[Span]] = []
        elapsed = 0.0
        with default_settings():
            for row, path in zip(rows, paths, strict=True):
                collection = SecretsCollection()
                started = time.perf_counter()
                collection.scan_file(str(path))
                elapsed += time.perf_counter() - started
                results.append(_locate(row["text"], collection))
    return results, elapsed


def _locate(text: str, collection: Any) -> list[Span]:
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    spans = []
    for _, secret in collection:
        value = secret.secret_value or ""
        number = secret.line_number - 1
        start = -1
        if 0 <= number < len(lines):
            column = lines[number].find(value)
            start = offsets[number] + column if column >= 0 else -1
        if start < 0:
            start = text.find(value)
        if start >= 0 and value:
            spans.append(Span(start, start + len(value), secret.type))
    return spans


def score(rows: Sequence[Row], found: Sequence[Sequence[Span]]) -> dict[str, float]:
    labels = [int(r["label"]) for r in rows]
    predictions = [1 if f else 0 for f in found]
    gold = [[Span(s["start"], s["end"], s["label"]) for s in r["spans"]] for r in rows]
    files = classification_report(labels, predictions)
    spans = span_report(gold, found, label_agnostic=True)["overlap"]["micro"]
    return {
        "files_n": files["n"],
        "files_precision": files["precision"],
        "files_recall": files["recall"],
        "files_f1": files["f1"],
        "files_balanced_accuracy": files["balanced_accuracy"],
        "files_fpr": files["fpr"],
        "spans_precision": spans["precision"],
        "spans_recall": spans["recall"],
        "spans_f1": spans["f1"],
    }


def adversarial_inputs(size: int = 1_000_000) -> dict[str, str]:
    rnd = random.Random(20240601)

    def word(n: int) -> str:
        return "".join(rnd.choices(string.ascii_letters + string.digits + "!", k=n))

    return {
        "keyword flood": "password=" * (size // 9),
        "distinct passwords": " ".join(f"password={word(8)}" for _ in range(size // 18)),
        "distinct api keys": " ".join(f"api_key={word(20)}" for _ in range(size // 29)),
        "unterminated PEM": "-----BEGIN RSA PRIVATE KEY-----" + "A" * size,
        "URL prefix flood": "a://b:" * (size // 6),
        "random base64": "".join(
            rnd.choices(string.ascii_letters + string.digits + "+/=\n ", k=size)
        ),
        "non-ASCII flood": "é password: ü " * (size // 14),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"dataset not found: {args.data}", file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in args.data.open(encoding="utf-8") if line.strip()]
    megabytes = sum(len(r["text"].encode()) for r in rows) / 1e6

    report: dict[str, Any] = {"data": str(args.data), "files": len(rows), "mb": megabytes}
    scanners: dict[str, Scanner] = {"mantlet": scan_mantlet, "detect-secrets": scan_detect_secrets}
    for name, scanner in scanners.items():
        found, seconds = scanner(rows)
        held = [i for i, r in enumerate(rows) if held_out(r)]
        report[name] = {
            "all": score(rows, found),
            "held_out": score([rows[i] for i in held], [found[i] for i in held]),
            "seconds": seconds,
            "mb_per_s": megabytes / seconds,
        }
    detector = create("secrets")
    adversarial = {}
    for label, text in adversarial_inputs().items():
        started = time.perf_counter()
        detector.detect(text, ScanContext())
        adversarial[label] = time.perf_counter() - started
    report["mantlet_adversarial_1mb_seconds"] = adversarial

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"data: {args.data} ({len(rows)} files, {megabytes:.2f} MB)")
    metrics = list(report["mantlet"]["all"])
    for subset in ("all", "held_out"):
        print(f"\n[{subset}]")
        print(f"{'metric':26s} {'mantlet':>10s} {'detect-secrets':>15s}")
        for metric in metrics:
            ours, theirs = (
                report["mantlet"][subset][metric],
                report["detect-secrets"][subset][metric],
            )
            print(f"{metric:26s} {ours:10.3f} {theirs:15.3f}")
    print("\nthroughput (MB/s):")
    for name in scanners:
        print(f"  {name:15s} {report[name]['mb_per_s']:8.2f}  ({report[name]['seconds']:.3f} s)")
    print("\nmantlet on 1 MB adversarial inputs (s):")
    for label, seconds in adversarial.items():
        print(f"  {label:22s} {seconds:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
