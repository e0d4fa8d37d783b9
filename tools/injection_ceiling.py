"""How far the injection models go when data is not the limit (research
only: it trains on every source, shippable or not, and never writes a model).

Two figures per source, same recipe as the shipped prompt head
(``train_injection.py``), every row weighted alike:

* in-domain: five stratified folds over all rows, every source in every
  fold, so each row is scored by a model that saw its source;
* held out: each source scored by a model trained on all the others
  (generated documents built from it left out too).

One threshold, chosen on the in-domain out-of-fold scores like the
shipped one (best balanced accuracy, at most 5 % of the hard negatives
flagged). The gap between the two columns is what a source of its own
adds; a source far below 0.96 even in-domain is a limit of the model, not
only of the data.

    python tools/injection_ceiling.py [--kind lexical|minilm] [--report FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))

import train_injection as base  # noqa: E402

FOLDS = 5


def in_domain_folds(sources: np.ndarray, labels: np.ndarray) -> list[tuple[Any, Any]]:
    """Five folds stratified by source and label: every fold holds a fifth
    of each source's attacks and of its benign rows."""
    from sklearn.model_selection import StratifiedKFold

    strata = np.array([f"{s}:{y}" for s, y in zip(sources, labels, strict=True)])
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=base.SEED)
    return list(folds.split(np.zeros(len(strata)), strata))


def held_out_split(
    held: str, sources: np.ndarray, parents: list[tuple[str, ...]]
) -> tuple[np.ndarray, np.ndarray]:
    """Train on every other source, and on no generated row built from ``held``."""
    built_from = np.array([held in p for p in parents])
    return np.where((sources != held) & ~built_from)[0], np.where(sources == held)[0]


def scorer(kind: str, rows: list[dict[str, Any]], labels: np.ndarray, offset: float) -> Any:
    """fit(train) -> score(test): the runtime's scores of the kind's prompt head."""
    from injection_lexical import LexicalData, combine
    from mantlet.detectors.injection.normalize import normalize

    texts = [normalize(r["text"]).text for r in rows]
    if kind == "lexical":
        lex = LexicalData(texts)

        def fit_lexical(train: np.ndarray) -> Any:
            model = lex.fit(train, labels[train])
            return lambda test: combine(*lex.logits(model, test), offset)

        return fit_lexical
    windows, runs = base.packaged_embeddings(rows, texts)
    first = np.stack([w[0] for w in windows])

    def fit_minilm(train: np.ndarray) -> Any:
        head = base.fit_head(first[train], labels[train])
        return lambda test: combine(
            base.max_window_logits(head, [windows[i] for i in test]),
            base.max_window_logits(head, [runs[i] for i in test]),
            offset,
        )

    return fit_minilm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--kind", choices=("lexical", "minilm"), default="lexical")
    parser.add_argument(
        "--offset",
        type=float,
        default=None,
        help="sentence-run logit offset (default: the shipped prompt head's, 1.5 / 2.5)",
    )
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args(argv)
    offset = args.offset if args.offset is not None else {"lexical": 1.5, "minilm": 2.5}[args.kind]
    report_path = args.report or ROOT / "bench" / "results" / f"injection_ceiling_{args.kind}.json"

    rows = base.load_rows(args.datasets)
    rows += base.generate_injected_documents(rows, random.Random(base.SEED))
    labels = np.array([r["label"] for r in rows])
    sources = np.array([r["source"] for r in rows])
    parents = [tuple(r.get("parents", ())) for r in rows]
    hard = sources == base.HARD_NEGATIVES
    fit = scorer(args.kind, rows, labels, offset)

    in_domain = np.zeros(len(rows))
    for number, (train, test) in enumerate(in_domain_folds(sources, labels), start=1):
        in_domain[test] = fit(train)(test)
        print(f"  in-domain fold {number}/{FOLDS}", file=sys.stderr)
    threshold = base.choose_threshold(in_domain, labels, hard)
    held_out = np.zeros(len(rows))
    for held in sorted(set(sources)):
        train, test = held_out_split(held, sources, parents)
        held_out[test] = fit(train)(test)
        print(f"  held out: {held}", file=sys.stderr)

    shippable = np.array([r["shippable"] for r in rows])
    per_source = {}
    for source in sorted(set(sources)):
        mask = sources == source
        per_source[source] = {
            "shippable": bool(shippable[mask].all()),
            "in_domain": base.rates(labels[mask], in_domain[mask] >= threshold),
            "held_out": base.rates(labels[mask], held_out[mask] >= threshold),
        }
    report = {
        "kind": args.kind,
        "rows": len(rows),
        "threshold": threshold,
        "sentence_offset": offset,
        "macro_in_domain": float(
            np.mean([v["in_domain"]["balanced_accuracy"] for v in per_source.values()])
        ),
        "macro_held_out": float(
            np.mean([v["held_out"]["balanced_accuracy"] for v in per_source.values()])
        ),
        "sources": per_source,
    }
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"| source | in-domain | held out |  ({args.kind}, threshold {threshold:.2f})")
    print("| --- | --- | --- |")
    for source, value in per_source.items():
        mark = "" if value["shippable"] else " (not shippable, in part or whole)"
        print(
            f"| {source}{mark} | {value['in_domain']['balanced_accuracy']:.3f} "
            f"| {value['held_out']['balanced_accuracy']:.3f} |"
        )
    print(f"| macro | {report['macro_in_domain']:.3f} | {report['macro_held_out']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
