"""The research scripts beside the training script: the ceiling's splits
(tools/injection_ceiling.py: in-domain folds see every source, held-out
splits see nothing of the held source), the MLP head's logits
(tools/injection_minilm_mlp.py) and the joint features
(tools/injection_joint_features.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))

import injection_ceiling
import injection_joint_features
import injection_minilm_mlp

SOURCES = np.array(["a"] * 10 + ["b"] * 10 + ["generated"] * 4)
LABELS = np.array(([0] * 5 + [1] * 5) * 2 + [1, 1, 0, 0])
PARENTS = [()] * 20 + [("a",), ("b",), ("a", "b"), ()]


def test_held_out_split_trains_on_nothing_of_the_held_source() -> None:
    train, test = injection_ceiling.held_out_split("a", SOURCES, PARENTS)
    assert set(SOURCES[test]) == {"a"} and len(test) == 10
    assert "a" not in set(SOURCES[train])
    # generated rows built from "a" are left out; the one built from neither stays in
    assert {20, 22}.isdisjoint(train) and {21, 23} <= set(train)


def test_in_domain_folds_cover_every_row_once_and_every_stratum_each_fold() -> None:
    pytest.importorskip("sklearn", reason="the training extras (scikit-learn) are not installed")
    folds = injection_ceiling.in_domain_folds(SOURCES[:20], LABELS[:20])
    assert len(folds) == injection_ceiling.FOLDS
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(20))
    for _, test in folds:
        strata = {(s, y) for s, y in zip(SOURCES[test], LABELS[test], strict=True)}
        assert strata == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}


def test_mlp_head_logits_order_rows_as_its_probabilities_and_separate_the_classes() -> None:
    pytest.importorskip("sklearn", reason="the training extras (scikit-learn) are not installed")
    rnd = np.random.default_rng(0)
    x = np.vstack([rnd.normal(-1.0, 0.3, (60, 4)), rnd.normal(1.0, 0.3, (60, 4))])
    y = np.array([0] * 60 + [1] * 60)
    head = injection_minilm_mlp.MlpHead(x, y)
    logits = head.decision_function(x)
    probabilities = head.model.predict_proba(x)[:, 1]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), np.clip(probabilities, 1e-7, 1 - 1e-7))
    assert logits[y == 1].min() > 0 > logits[y == 0].max()


def test_joint_features_put_the_scaled_embedding_beside_the_n_grams() -> None:
    sparse = pytest.importorskip("scipy.sparse", reason="the training extras are not installed")
    tfidf = sparse.csr_matrix(np.array([[0.6, 0.0, 0.8], [0.0, 1.0, 0.0]]))
    embeddings = np.array([[0.5, -0.5], [1.0, 0.0]], dtype=np.float32)
    assert injection_joint_features.joint(tfidf, embeddings, 0.0) is tfidf
    both = injection_joint_features.joint(tfidf, embeddings, 2.0).toarray()
    np.testing.assert_allclose(both, [[0.6, 0.0, 0.8, 1.0, -1.0], [0.0, 1.0, 0.0, 2.0, 0.0]])
