"""Training side of the injection detector's lexical layer (used by
train_injection.py): hashed n-gram TF-IDF matrices built with the runtime's
own featurizer (mantlet.detectors.injection.lexical), logistic heads, and
max-over-windows scores exactly as the detector computes them."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from mantlet.detectors.injection import lexical

MAX_TRAIN_CHARS = (
    4000  # a training text's first characters (long documents are windows at run time)
)
MAX_WINDOWS = 64
MIN_DF = (3, 5)  # word and character families: rarer buckets are ignored
# Inverse regularisation of the logistic heads, picked on the training
# sources only: leave-one-source-out macro balanced accuracy of the lexical
# prompt head at its out-of-fold threshold was 0.724 / 0.728 / 0.732 / 0.724 /
# 0.721 for C = 0.03 / 0.1 / 0.3 / 1 / 3 (with word 1-2-grams; trigrams came after).
C = 0.3


def _sublinear_tf(texts: list[str]) -> Any:
    """Rows of (1 + log count) per bucket, both families side by side."""
    from scipy import sparse

    indptr, indices, values = [0], [], []
    for text in texts:
        words, chars = lexical.term_counts(text)
        for bucket, count in words.items():
            indices.append(bucket)
            values.append(1.0 + math.log(count))
        for bucket, count in chars.items():
            indices.append(lexical.BUCKETS + bucket)
            values.append(1.0 + math.log(count))
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(values, dtype=np.float32), np.asarray(indices), np.asarray(indptr)),
        shape=(len(texts), 2 * lexical.BUCKETS),
    )


def inverse_frequencies(df: np.ndarray, n: int) -> np.ndarray:
    """Smoothed IDF (as scikit-learn's), zero below each family's ``MIN_DF``
    (the detector then ignores the bucket)."""
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    idf[: lexical.BUCKETS][df[: lexical.BUCKETS] < MIN_DF[0]] = 0.0
    idf[lexical.BUCKETS :][df[lexical.BUCKETS :] < MIN_DF[1]] = 0.0
    return idf.astype(np.float32)


def _weighted(tf: Any, idf: np.ndarray) -> Any:
    """TF-IDF with each family L2-normalised on its own, as ``lexical.features``."""
    from scipy import sparse
    from sklearn.preprocessing import normalize

    x = tf.multiply(idf.reshape(1, -1)).tocsr()
    words = normalize(x[:, : lexical.BUCKETS])
    chars = normalize(x[:, lexical.BUCKETS :])
    return sparse.hstack([words, chars]).tocsr()


class LexicalData:
    """Term-frequency matrices of every training text and of every run-time
    window, computed once; heads are fitted on any subset of rows."""

    def __init__(self, texts: list[str]) -> None:
        self.full = _sublinear_tf([t[:MAX_TRAIN_CHARS] for t in texts])
        window_texts: list[str] = []
        self.first_window = np.zeros(len(texts) + 1, dtype=np.int64)
        for index, text in enumerate(texts):
            self.first_window[index] = len(window_texts)
            window_texts.extend(lexical.windows(text)[:MAX_WINDOWS])
        self.first_window[len(texts)] = len(window_texts)
        self.windows = _sublinear_tf(window_texts)

    def fit(self, rows: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> Any:
        """(idf, logistic regression) trained on ``rows``."""
        from sklearn.linear_model import LogisticRegression

        tf = self.full[rows]
        df = np.bincount(tf.indices, minlength=2 * lexical.BUCKETS)
        idf = inverse_frequencies(df, len(rows))
        head = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, solver="liblinear")
        head.fit(_weighted(tf, idf), labels, sample_weight=weights)
        return idf, head

    def scores(self, model: Any, rows: np.ndarray) -> np.ndarray:
        """Highest window probability of each row, as the detector scores it."""
        idf, head = model
        picked = np.concatenate(
            [np.arange(self.first_window[r], self.first_window[r + 1]) for r in rows]
        )
        owners = np.repeat(np.arange(len(rows)), np.diff(self.first_window)[rows])
        probabilities = head.predict_proba(_weighted(self.windows[picked], idf))[:, 1]
        best = np.zeros(len(rows))
        np.maximum.at(best, owners, probabilities)
        return best


def serialise(models: dict[str, Any]) -> bytes:
    """The ``lexical.npz`` the detector loads: one IDF table (the prompt
    head's; both heads see the same rows) and each head's weights."""
    idf = models["prompt"][0]
    arrays: dict[str, np.ndarray] = {"idf": idf.astype(np.float32)}
    for name, (head_idf, head) in models.items():
        if not np.array_equal(head_idf, idf):
            raise ValueError("the heads must share one IDF table")
        arrays[f"{name}_coef"] = head.coef_[0].astype(np.float32)
        arrays[f"{name}_bias"] = np.asarray(head.intercept_[0], dtype=np.float64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
