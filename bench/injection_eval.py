"""Generalisation of the whole injection detector (normalisation, rules and
the shipped model) on sources it was never trained on.

The shipped model is trained only on rows whose dataset README allows it
(see tools/train_injection.py); every other source — TensorTrust attacks,
PromptShield, benign code prompts, the CC BY-NC Alpaca seeds, promptmap and
WildGuard rows — is never seen in training and is scored here, per source,
with the policy's threshold (0.5 = the model's own calibrated cut). The
hard-negative set is shippable, so its honest false-positive rate is the
leave-one-source-out figure printed by the training script.

    python bench/injection_eval.py [--datasets ../shared/datasets] [--kind K] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import train_injection  # noqa: E402
from mantlet.core.registry import create  # noqa: E402
from mantlet.core.types import ScanContext  # noqa: E402
from mantlet.detectors.injection.model import KINDS  # noqa: E402
from mantlet.evaluation.metrics import classification_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument(
        "--kind",
        choices=KINDS,
        help="the learned layer (default: the detector's)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.datasets.is_dir():
        print(f"datasets not found: {args.datasets}", file=sys.stderr)
        return 2

    rows = [r for r in train_injection.load_rows(args.datasets) if not r["shippable"]]
    detector = create("injection", {"model_kind": args.kind} if args.kind else {})
    context = ScanContext()
    started = time.perf_counter()
    predictions: list[int] = []
    for first in range(0, len(rows), 32):
        batch = [r["text"] for r in rows[first : first + 32]]
        for findings in detector.detect_batch(batch, context):
            predictions.append(int(any(f.score >= args.threshold for f in findings)))
    elapsed = time.perf_counter() - started

    report: dict[str, Any] = {"rows": len(rows), "seconds": elapsed, "sources": {}}
    labels = [r["label"] for r in rows]
    report["all"] = classification_report(labels, predictions)
    for source in sorted({r["source"] for r in rows}):
        index = [i for i, r in enumerate(rows) if r["source"] == source]
        report["sources"][source] = classification_report(
            [labels[i] for i in index], [predictions[i] for i in index]
        )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"never-trained sources: {len(rows)} rows, {elapsed:.1f} s")
    print(f"{'source':34s} {'n':>6s} {'TPR':>6s} {'FPR':>6s} {'bal.acc':>8s}")
    for name, figures in [*report["sources"].items(), ("ALL", report["all"])]:
        tpr = f"{figures['tpr']:.3f}" if figures["tp"] + figures["fn"] else "-"
        fpr = f"{figures['fpr']:.3f}" if figures["fp"] + figures["tn"] else "-"
        print(
            f"{name:34s} {figures['n']:6d} {tpr:>6s} {fpr:>6s} {figures['balanced_accuracy']:8.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
