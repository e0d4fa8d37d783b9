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
MAX_WINDOWS = 512  # every window of any training text (the detector has no cap)
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
    window (wide windows and runs of sentences), computed once; heads are
    fitted on any subset of rows."""

    def __init__(self, texts: list[str], sentence_chars: int = lexical.SENTENCE_CHARS) -> None:
        self.full = _sublinear_tf([t[:MAX_TRAIN_CHARS] for t in texts])
        self.wide = _Windows(texts, lexical.windows)
        self.sentences = _Windows(texts, lambda t: lexical.sentence_windows(t, sentence_chars))

    def fit(self, rows: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> Any:
        """(idf, logistic regression) trained on ``rows``."""
        from sklearn.linear_model import LogisticRegression

        tf = self.full[rows]
        df = np.bincount(tf.indices, minlength=2 * lexical.BUCKETS)
        idf = inverse_frequencies(df, len(rows))
        head = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, solver="liblinear")
        head.fit(_weighted(tf, idf), labels, sample_weight=weights)
        return idf, head

    def logits(self, model: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's highest wide-window logit and highest sentence-run
        logit (-inf where a text is too short for runs)."""
        return self.wide.best_logits(model, rows), self.sentences.best_logits(model, rows)

    def scores(self, model: Any, rows: np.ndarray, offset: float = math.inf) -> np.ndarray:
        """Each row's probability as the detector computes it."""
        return combine(*self.logits(model, rows), offset)


def combine(wide: np.ndarray, sentences: np.ndarray, offset: float) -> np.ndarray:
    """The detector's score from the two window families' best logits."""
    best = np.maximum(wide, sentences - offset)
    result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(best, -50.0, 50.0)))
    return result


class _Windows:
    """One family of run-time windows of every text, as term-frequency rows."""

    def __init__(self, texts: list[str], split: Any) -> None:
        window_texts: list[str] = []
        self.first = np.zeros(len(texts) + 1, dtype=np.int64)
        for index, text in enumerate(texts):
            self.first[index] = len(window_texts)
            window_texts.extend(split(text)[:MAX_WINDOWS])
        self.first[len(texts)] = len(window_texts)
        self.tf = _sublinear_tf(window_texts)

    def best_logits(self, model: Any, rows: np.ndarray) -> np.ndarray:
        idf, head = model
        best = np.full(len(rows), -np.inf)
        counts = np.diff(self.first)[rows]
        if not counts.any():
            return best
        picked = np.concatenate([np.arange(self.first[r], self.first[r + 1]) for r in rows])
        owners = np.repeat(np.arange(len(rows)), counts)
        logits = head.decision_function(_weighted(self.tf[picked], idf))
        np.maximum.at(best, owners, logits)
        return best


def serialise(
    models: dict[str, Any], sentence_offsets: dict[str, float], sentence_chars: int
) -> bytes:
    """The ``lexical.npz`` the detector loads: one IDF table (the prompt
    head's; both heads see the same rows), each head's weights and its
    sentence-run offset, and the runs' length."""
    idf = models["prompt"][0]
    arrays: dict[str, np.ndarray] = {
        "idf": idf.astype(np.float32),
        "sentence_chars": np.asarray(sentence_chars, dtype=np.int64),
    }
    for name, (head_idf, head) in models.items():
        if not np.array_equal(head_idf, idf):
            raise ValueError("the heads must share one IDF table")
        arrays[f"{name}_coef"] = head.coef_[0].astype(np.float32)
        arrays[f"{name}_bias"] = np.asarray(head.intercept_[0], dtype=np.float64)
        arrays[f"{name}_sentence_offset"] = np.asarray(sentence_offsets[name], dtype=np.float64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
