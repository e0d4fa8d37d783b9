"""Does a long benign text dilute one injected sentence?

Builds texts of about 600, 1,500 and 4,000 characters from benign texts the
injection model never trained on, of two kinds:

* ``prose``: consecutive sentences of Reuters news (CoNLL-2003 train and dev,
  not the reserved test split) and Wikipedia articles (WikiGold), the kind of
  text a RAG application retrieves;
* ``chat``: user prompts from PromptShield's UltraChat and IFEval rows, full
  of instructions to the assistant ("Your entire response should be in
  English"), the hardest benign filler for an injection detector;

sets one injection from never-trained sources (TensorTrust, PromptShield's
attacks, promptmap; 40-300 characters) at a random sentence boundary, and
reports, for the whole detector (normalization, rules and model) and for the
model alone:

* ``alone``: the injections on their own (the ceiling),
* ``embedded``: the same injections inside the long texts,
* ``clean``: the long texts without them (false positives),

each with the document head (what documents and tool output get) and the
prompt head. Deterministic (fixed seed), nothing here is trained or tuned on.

    python bench/injection_dilution.py [--datasets ../shared/datasets] [--count 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import train_injection  # noqa: E402
from mantlet.core.registry import create  # noqa: E402
from mantlet.core.types import PartKind, ScanContext  # noqa: E402
from mantlet.detectors.injection import DEFAULT_KIND  # noqa: E402
from mantlet.detectors.injection.model import KINDS, shared_model  # noqa: E402
from mantlet.detectors.injection.normalize import normalize  # noqa: E402

SEED = 20261207
LENGTHS = (600, 1500, 4000)
_BOUNDARY = re.compile(r"(?<=[.!?])\s+")
_CHAT_CATEGORIES = ("ultrachat", "ifeval")


def _detokenized(tokens: str) -> str:
    """CoNLL and WikiGold text is space-separated tokens: join them back."""
    text = re.sub(r" ([.,;:!?%)\]'])", r"\1", tokens)
    return re.sub(r"([(\[$]) ", r"\1", text).replace(" n't", "n't")


def _prose(datasets: Path) -> list[str]:
    """Paragraphs of about five consecutive sentences of one news story or article."""
    paragraphs: list[str] = []
    for folder, key in (("pii_conll2003_train_dev", "split"), ("pii_wikigold", "doc")):
        current: list[str] = []
        last: object = None
        for line in (datasets / folder / "data.jsonl").open(encoding="utf-8"):
            row = json.loads(line)
            text = _detokenized(row["text"])
            if row.get(key) != last or len(current) == 5:
                if sum(len(t) for t in current) >= 200:
                    paragraphs.append(" ".join(current))
                current = []
            last = row.get(key)
            if len(text.split()) >= 4:  # datelines and bylines are not sentences
                current.append(text)
    return sorted(set(paragraphs))


def build(datasets: Path, count: int) -> dict[str, dict[str, list[str]]]:
    rows = [r for r in train_injection.load_rows(datasets) if not r["shippable"]]
    attacks = sorted({r["text"] for r in rows if r["label"] == 1 and 40 <= len(r["text"]) <= 300})
    chat = sorted(
        {
            r["text"]
            for r in rows
            if r["label"] == 0
            and r["source"] == "promptshield_train"
            and any(c in r["category"] for c in _CHAT_CATEGORIES)
            and len(r["text"]) >= 200
        }
    )
    rnd = random.Random(SEED)
    attacks = rnd.sample(attacks, min(count, len(attacks)))
    sets: dict[str, dict[str, list[str]]] = {"": {"alone": attacks}}
    for name, filler in (("prose", _prose(datasets)), ("chat", chat)):
        sets[name] = {}
        for length in LENGTHS:
            embedded, clean = [], []
            for attack in attacks:
                text = train_injection.concatenated(rnd, filler, length)
                cuts = [m.end() for m in _BOUNDARY.finditer(text)] or [len(text) // 2]
                cut = rnd.choice(cuts)
                embedded.append(f"{text[:cut]}{attack} {text[cut:]}")
                clean.append(train_injection.concatenated(rnd, filler, length))
            sets[name][f"embedded_{length}"] = embedded
            sets[name][f"clean_{length}"] = clean
    return sets


def flagged(texts: list[str], part: PartKind, kind: str, threshold: float) -> tuple[float, float]:
    """(share flagged, ms per text) for the whole detector."""
    detector = create("injection", {"model_kind": kind})
    context = ScanContext(part=part)
    started = time.perf_counter()
    hits = sum(
        any(f.kind == "PROMPT_INJECTION" and f.score >= threshold for f in findings)
        for findings in detector.detect_batch(texts, context)
    )
    return hits / len(texts), 1000 * (time.perf_counter() - started) / len(texts)


def model_flagged(texts: list[str], head: str, kind: str) -> float:
    model = shared_model()
    cut = model.thresholds[kind][head]
    scores = model.score([normalize(t).text for t in texts], head, kind=kind)
    return sum(s >= cut for s in scores) / len(texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--count", type=int, default=300, help="injections (and clean texts)")
    parser.add_argument("--kind", choices=KINDS, default=DEFAULT_KIND)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.datasets.is_dir():
        print(f"datasets not found: {args.datasets}", file=sys.stderr)
        return 2
    sets = build(args.datasets, args.count)
    report: dict[str, Any] = {"kind": args.kind, "count": len(sets[""]["alone"]), "rows": {}}
    for head, part in (("document", PartKind.DOCUMENT), ("prompt", PartKind.PROMPT)):
        for filler, named in sets.items():
            for name, texts in named.items():
                share, ms = flagged(texts, part, args.kind, args.threshold)
                report["rows"][f"{head}/{filler}/{name}".replace("//", "/")] = {
                    "detector": round(share, 3),
                    "model_alone": round(model_flagged(texts, head, args.kind), 3),
                    "ms_per_text": round(ms, 2),
                }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"kind {args.kind}, {report['count']} injections from never-trained sources")
    print(f"{'head/filler/set':30s} {'detector':>9s} {'model':>7s} {'ms/text':>8s}")
    for name, row in report["rows"].items():
        print(
            f"{name:30s} {row['detector']:9.3f} {row['model_alone']:7.3f} {row['ms_per_text']:8.2f}"
        )
    print("(embedded and alone: share flagged = TPR; clean: share flagged = FPR)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
