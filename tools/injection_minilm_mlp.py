"""Would a hidden layer on MiniLM help? (research only: writes a report, never a model)

The shipped MiniLM head is logistic on frozen embeddings. This script puts
a one-hidden-layer MLP (256 units, early stopping) on the same embeddings
and compares, on the shippable rows only, exactly as ``train_injection.py``
chooses between kinds: out-of-fold scores (folds by source and category)
pick each threshold, then leave one shippable source out. The lexical
kind and the mean of two kinds' probabilities (the ensemble) are scored
the same way, and every model trained on all shippable rows is scored on
the never-trained sources for the record (not for the choice). Rows are
weighted alike and sentence-run offsets are the shipped prompt head's, so
the figures are comparable with each other, not with the training report.

    python tools/injection_minilm_mlp.py [--report FILE]
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

OFFSETS = {"lexical": 1.5, "logistic": 2.5, "mlp": 2.5}  # the shipped prompt head's


class MlpHead:
    """sklearn's MLP with ``decision_function`` as a logit, like the logistic head."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.neural_network import MLPClassifier

        self.model = MLPClassifier(
            hidden_layer_sizes=(256,), alpha=1e-3, early_stopping=True, random_state=0, max_iter=60
        )
        self.model.fit(x, y)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        p = np.clip(self.model.predict_proba(x)[:, 1], 1e-7, 1 - 1e-7)
        logits: np.ndarray = np.log(p / (1 - p))
        return logits


def main(argv: list[str] | None = None) -> int:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GroupKFold

    from injection_lexical import LexicalData
    from mantlet.detectors.injection.normalize import normalize

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument(
        "--report", type=Path, default=ROOT / "bench" / "results" / "injection_minilm_mlp.json"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    rows = base.load_rows(args.datasets)
    rows += base.generate_injected_documents(rows, random.Random(base.SEED))
    texts = [normalize(r["text"]).text for r in rows]
    labels = np.array([r["label"] for r in rows])
    sources = np.array([r["source"] for r in rows])
    shippable = np.array([r["shippable"] for r in rows])
    hard = sources == base.HARD_NEGATIVES
    groups = np.array([r.get("group", f"{r['source']}:{r['category']}") for r in rows])
    windows, runs = base.packaged_embeddings(rows, texts)
    first = np.stack([w[0] for w in windows])
    print("lexical features ...", file=sys.stderr)
    lex = LexicalData(texts)

    def logits(kind: str, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        if kind == "lexical":
            wide, sentences = lex.logits(lex.fit(train, labels[train]), test)
        else:
            head: Any = (
                base.fit_head(first[train], labels[train])
                if kind == "logistic"
                else MlpHead(first[train], labels[train])
            )
            wide = base.max_window_logits(head, [windows[i] for i in test])
            sentences = base.max_window_logits(head, [runs[i] for i in test])
        best: np.ndarray = np.clip(np.maximum(wide, sentences - OFFSETS[kind]), -50, 50)
        return best

    ship, never = np.where(shippable)[0], np.where(~shippable)[0]
    held_sources = sorted(set(sources[shippable]))
    oof = {k: np.zeros(len(rows)) for k in OFFSETS}
    loso = {k: np.zeros(len(rows)) for k in OFFSETS}
    final = {k: np.zeros(len(rows)) for k in OFFSETS}
    for train, test in GroupKFold(n_splits=5).split(ship, groups=groups[ship]):
        for kind in OFFSETS:
            oof[kind][ship[test]] = logits(kind, ship[train], ship[test])
    print("  out-of-fold scores", file=sys.stderr)
    for held in held_sources:
        built_from = np.array([held in r.get("parents", ()) for r in rows])
        train = np.where(shippable & (sources != held) & ~built_from)[0]
        test = np.where(shippable & (sources == held))[0]
        for kind in OFFSETS:
            loso[kind][test] = logits(kind, train, test)
        print(f"  left out: {held}", file=sys.stderr)
    for kind in OFFSETS:
        final[kind][never] = logits(kind, ship, never)

    def probability(scores: dict[str, np.ndarray], name: str) -> np.ndarray:
        p = {k: 1.0 / (1.0 + np.exp(-v)) for k, v in scores.items()}
        if name in p:
            return p[name]
        first_kind, second_kind = name.split("+")
        mean: np.ndarray = (p[first_kind] + p[second_kind]) / 2
        return mean

    report: dict[str, Any] = {"rows": len(rows), "offsets": OFFSETS, "models": {}}
    for name in ("lexical", "logistic", "mlp", "lexical+logistic", "lexical+mlp"):
        threshold = base.choose_threshold(probability(oof, name)[ship], labels[ship], hard[ship])
        held_out = probability(loso, name)
        per_source = {}
        for source in held_sources:
            mask = shippable & (sources == source)  # its other rows were never scored
            per_source[source] = base.rates(labels[mask], held_out[mask] >= threshold)
        unseen = base.rates(labels[never], probability(final, name)[never] >= threshold)
        report["models"][name] = {
            "threshold": threshold,
            "leave_one_source_out_macro": float(
                np.mean([v["balanced_accuracy"] for v in per_source.values()])
            ),
            "leave_one_source_out": per_source,
            "never_trained_sources": unseen,
        }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print("| model | threshold | leave-one-source-out macro | never-trained BA (TPR / FPR) |")
    print("| --- | --- | --- | --- |")
    for name, value in report["models"].items():
        unseen = value["never_trained_sources"]
        print(
            f"| {name} | {value['threshold']:.2f} | {value['leave_one_source_out_macro']:.3f} "
            f"| {unseen['balanced_accuracy']:.3f} ({unseen['tpr']:.3f} / {unseen['fpr']:.3f}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
