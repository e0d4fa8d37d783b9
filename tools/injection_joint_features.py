"""One logistic head on n-grams and MiniLM together? (research only: writes a
report, never a model)

The ensemble averages two separately trained heads. This script trains one
head on both feature sets side by side: the lexical kind's TF-IDF (each
family L2-normalised) and the MiniLM embedding of the text's first window,
scaled by ``alpha`` (0 = the lexical features alone). Whole texts only (no
windows or runs), rows weighted alike, thresholds from out-of-fold scores of
the shippable rows, then leave one shippable source out, as
``train_injection.py`` chooses kinds; the never-trained sources are scored
for the record.

    python tools/injection_joint_features.py [--alpha 0 1 3] [--report FILE]
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

import injection_lexical as lexical_training  # noqa: E402
import train_injection as base  # noqa: E402


def joint(tfidf: Any, embeddings: np.ndarray, alpha: float) -> Any:
    """The two feature sets side by side (the embeddings scaled by ``alpha``)."""
    from scipy import sparse

    if alpha == 0:
        return tfidf
    return sparse.hstack([tfidf, sparse.csr_matrix(alpha * embeddings)]).tocsr()


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    from mantlet.detectors.injection.normalize import normalize

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    parser.add_argument(
        "--report",
        type=Path,
        default=ROOT / "bench" / "results" / "injection_joint_features.json",
    )
    args = parser.parse_args(argv)

    rows = base.load_rows(args.datasets)
    rows += base.generate_injected_documents(rows, random.Random(base.SEED))
    texts = [normalize(r["text"]).text for r in rows]
    windows, _ = base.packaged_embeddings(rows, texts)
    embeddings = np.stack([w[0] for w in windows]).astype(np.float32)
    labels = np.array([r["label"] for r in rows])
    sources = np.array([r["source"] for r in rows])
    shippable = np.array([r["shippable"] for r in rows])
    hard = sources == base.HARD_NEGATIVES
    groups = np.array([r.get("group", f"{r['source']}:{r['category']}") for r in rows])
    tf = lexical_training._sublinear_tf([t[: lexical_training.MAX_TRAIN_CHARS] for t in texts])

    def scores(train: np.ndarray, test: np.ndarray, alpha: float) -> np.ndarray:
        df = np.bincount(tf[train].indices, minlength=tf.shape[1])
        idf = lexical_training.inverse_frequencies(df, len(train))

        def features(index: np.ndarray) -> Any:
            return joint(lexical_training._weighted(tf[index], idf), embeddings[index], alpha)

        head = LogisticRegression(
            C=lexical_training.C, class_weight="balanced", max_iter=3000, solver="liblinear"
        )
        head.fit(features(train), labels[train])
        probabilities: np.ndarray = head.predict_proba(features(test))[:, 1]
        return probabilities

    ship, never = np.where(shippable)[0], np.where(~shippable)[0]
    held_sources = sorted(set(sources[shippable]))
    report: dict[str, Any] = {"rows": len(rows), "alphas": {}}
    print("| alpha | threshold | leave-one-source-out macro | never-trained BA (TPR / FPR) |")
    print("| --- | --- | --- | --- |")
    for alpha in args.alpha:
        oof = np.zeros(len(rows))
        for train, test in GroupKFold(n_splits=5).split(ship, groups=groups[ship]):
            oof[ship[test]] = scores(ship[train], ship[test], alpha)
        threshold = base.choose_threshold(oof[ship], labels[ship], hard[ship])
        per_source = {}
        for held in held_sources:
            built_from = np.array([held in r.get("parents", ()) for r in rows])
            train = np.where(shippable & (sources != held) & ~built_from)[0]
            test = np.where(shippable & (sources == held))[0]
            per_source[held] = base.rates(labels[test], scores(train, test, alpha) >= threshold)
        unseen = base.rates(labels[never], scores(ship, never, alpha) >= threshold)
        macro = float(np.mean([v["balanced_accuracy"] for v in per_source.values()]))
        report["alphas"][str(alpha)] = {
            "threshold": threshold,
            "leave_one_source_out_macro": macro,
            "leave_one_source_out": per_source,
            "never_trained_sources": unseen,
        }
        print(
            f"| {alpha} | {threshold:.2f} | {macro:.3f} | {unseen['balanced_accuracy']:.3f} "
            f"({unseen['tpr']:.3f} / {unseen['fpr']:.3f}) |",
            flush=True,
        )
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
