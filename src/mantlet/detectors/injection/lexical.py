"""The lexical layer: hashed word 1-3-grams and character 3-5-grams, TF-IDF
weighted, with a logistic head per part kind. (Word trigrams, and not
character 2-6-grams, were added on leave-one-source-out macro balanced
accuracy of the training sources: 0.742 and 0.726 against 0.732.)

Why it exists beside MiniLM: on sources never trained on it ranks
injections at least as well as the sentence-embedding head, at the same
recall it flags far fewer benign texts that merely talk about prompts
(embeddings put "explain the DAN jailbreak" next to the jailbreak itself;
the words around it differ), and it costs a fraction of a millisecond
instead of several (README, "The injection detector").

Hand-written rather than scikit-learn's ``HashingVectorizer`` +
``TfidfTransformer``: the runtime must not depend on scikit-learn, and the
featurizer is a few lines. The training script (tools/train_injection.py)
uses this very module, so training and serving cannot drift apart.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence

from mantlet.errors import DetectorError

BITS = 19  # buckets per family: 2**19 (about 200k distinct n-grams survive min_df)
BUCKETS = 1 << BITS
CHAR_ORDERS = (3, 4, 5)
WINDOW_CHARS = 600  # longer texts: overlapping windows, highest score wins
WINDOW_STRIDE = 300
HEADS = ("prompt", "document")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def windows(text: str) -> list[str]:
    """Overlapping character windows, so one injected sentence in a long
    document is scored on its own and not diluted by the rest."""
    if len(text) <= WINDOW_CHARS:
        return [text]
    starts = range(0, len(text) - WINDOW_CHARS + WINDOW_STRIDE, WINDOW_STRIDE)
    return [text[s : s + WINDOW_CHARS] for s in starts]


def term_counts(text: str) -> tuple[Counter[int], Counter[int]]:
    """Bucket counts of word 1-3-grams and of 3-5-character n-grams inside
    each whitespace-separated word padded with spaces (scikit-learn's
    ``char_wb``), of the lowercased text. (List comprehensions, not loops:
    twice as fast, and this is most of the layer's time.)"""
    lowered = text.lower()
    tokens = _TOKEN.findall(lowered)
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
    triples = [f"{a} {b} {c}" for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False)]
    crc, mask = zlib.crc32, BUCKETS - 1  # inlined: a function call per n-gram costs a third
    words = Counter(
        [crc(b"w" + g.encode("utf-8", "surrogatepass")) & mask for g in tokens + pairs + triples]
    )
    grams: list[str] = []
    for word in lowered.split():
        padded = f" {word} "
        size = len(padded)
        grams += [padded[i : i + n] for n in CHAR_ORDERS for i in range(size - n + 1)]
    chars = Counter([crc(b"c" + g.encode("utf-8", "surrogatepass")) & mask for g in grams])
    return words, chars


def _tfidf(counts: Counter[int], idf: Sequence[float], offset: int) -> dict[int, float]:
    """Sublinear TF times IDF, L2-normalised; buckets with idf 0 (rare in
    training) are dropped. Keys are shifted by ``offset``."""
    weighted = {}
    for bucket, count in counts.items():
        weight = idf[offset + bucket]
        if weight:
            weighted[offset + bucket] = (1.0 + math.log(count)) * weight
    norm = math.sqrt(sum(v * v for v in weighted.values()))
    if norm == 0.0:
        return {}
    return {index: value / norm for index, value in weighted.items()}


def features(text: str, idf: Sequence[float]) -> dict[int, float]:
    """The sparse feature vector: word family in [0, BUCKETS), characters in
    [BUCKETS, 2 * BUCKETS), each family normalised on its own."""
    words, chars = term_counts(text)
    return {**_tfidf(words, idf, 0), **_tfidf(chars, idf, BUCKETS)}


class LexicalModel:
    """IDF table plus one head per part kind, loaded from verified bytes."""

    def __init__(self, data: bytes) -> None:
        import numpy as np

        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                idf = np.asarray(arrays["idf"], dtype=np.float64)
                coefs = {n: np.asarray(arrays[f"{n}_coef"], dtype=np.float64) for n in HEADS}
                self.biases = {n: float(arrays[f"{n}_bias"]) for n in HEADS}
        except (OSError, ValueError, KeyError) as exc:
            raise DetectorError(f"cannot read the lexical model: {exc}") from None
        if idf.shape != (2 * BUCKETS,) or any(c.shape != idf.shape for c in coefs.values()):
            raise DetectorError("the lexical model was built for another bucket count")
        self.idf = idf
        self.coefs = coefs

    def score(self, text: str, head: str) -> float:
        """Highest window probability under ``head``: the logistic function of
        ``bias + coef . features(window)``, computed with numpy."""
        import numpy as np

        coef, bias = self.coefs[head], self.biases[head]
        best = 0.0
        for window in windows(text):
            logit = bias
            for counts, offset in zip(term_counts(window), (0, BUCKETS), strict=True):
                if not counts:
                    continue
                index = np.fromiter(counts.keys(), np.int64, len(counts)) + offset
                tf = np.fromiter(counts.values(), np.float64, len(counts))
                weights = (1.0 + np.log(tf)) * self.idf[index]
                norm = math.sqrt(float(weights @ weights))
                if norm:
                    logit += float(weights @ coef[index]) / norm
            best = max(best, 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit)))))
        return best
