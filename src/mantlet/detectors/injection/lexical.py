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
# Texts longer than this are also scored in runs of whole sentences. One
# injected sentence in a 600-character window of benign prose was outvoted by
# it: on never-trained injections set into longer benign text, the model
# caught 8-10 % against 43 % of the same sentences alone
# (bench/injection_dilution.py). A short run's logit is lowered by its
# head's ``sentence_offset``, picked by the training script so that these
# extra windows cost almost no false positives on benign training text. The
# run length is the model's (``sentence_chars`` in lexical.npz); this is the
# training script's default, the length the shipped model was built with.
SENTENCE_CHARS = 120
HEADS = ("prompt", "document")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE = re.compile(r"[^\n]*?(?:[.!?;:]+(?=\s)|\n|$)")


def windows(text: str) -> list[str]:
    """The text itself up to 600 characters, else overlapping 600-character
    windows, each sentence whole in at least one."""
    if len(text) <= WINDOW_CHARS:
        return [text]
    starts = range(0, len(text) - WINDOW_CHARS + WINDOW_STRIDE, WINDOW_STRIDE)
    return [text[s : s + WINDOW_CHARS] for s in starts]


def sentence_spans(text: str, size: int = SENTENCE_CHARS) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line, stripped of surrounding space;
    one longer than ``size`` becomes pieces of that size, each starting half
    a piece after the last."""
    spans: list[tuple[int, int]] = []
    half = size // 2
    for match in _SENTENCE.finditer(text):
        start, end = match.span()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end:
            continue
        while end - start > size:
            spans.append((start, start + size))
            start += half
        spans.append((start, end))
    return spans


def sentence_windows(text: str, size: int = SENTENCE_CHARS) -> list[str]:
    """Runs of whole sentences up to ``size`` characters. A run starts at the
    first sentence half a window past the last run's start, or at the first
    sentence the last run could not hold, whichever comes first: so every
    sentence is seen whole, and most characters about twice. None for texts
    of ``size`` or less."""
    spans = sentence_spans(text, size) if len(text) > size else []
    return [text[spans[a][0] : spans[b][1]] for a, b in _runs(spans, size)]


def _runs(spans: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """(first, last) span index of each run of ``sentence_windows``."""
    found: list[tuple[int, int]] = []
    first = 0
    while first < len(spans):
        start = spans[first][0]
        last = first
        while last + 1 < len(spans) and spans[last + 1][1] - start <= size:
            last += 1
        found.append((first, last))
        if last + 1 == len(spans):
            break
        following = first + 1
        while following <= last and spans[following][0] < start + size // 2:
            following += 1
        first = following
    return found


def term_counts(
    text: str, memo: dict[str, list[int]] | None = None
) -> tuple[Counter[int], Counter[int]]:
    """Bucket counts of word 1-3-grams and of 3-5-character n-grams inside
    each whitespace-separated word padded with spaces (scikit-learn's
    ``char_wb``), of the lowercased text. (List comprehensions, not loops:
    twice as fast, and this is most of the layer's time.) ``memo``: see
    ``_char_buckets``."""
    lowered = text.lower()
    return Counter(_word_buckets(_TOKEN.findall(lowered))), Counter(_char_buckets(lowered, memo))


def _word_buckets(tokens: list[str]) -> list[int]:
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
    triples = [f"{a} {b} {c}" for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False)]
    crc, mask = zlib.crc32, BUCKETS - 1  # inlined: a function call per n-gram costs a third
    return [crc(b"w" + g.encode("utf-8", "surrogatepass")) & mask for g in tokens + pairs + triples]


def _char_buckets(lowered: str, memo: dict[str, list[int]] | None = None) -> list[int]:
    """Buckets of the padded character n-grams of each word; ``memo`` keeps
    each distinct word's buckets across the windows of one text, where most
    words recur (every character is in about four windows)."""
    memo = {} if memo is None else memo
    crc, mask = zlib.crc32, BUCKETS - 1
    buckets: list[int] = []
    for word in lowered.split():
        known = memo.get(word)
        if known is None:
            padded = f" {word} "
            size = len(padded)
            grams = [padded[i : i + n] for n in CHAR_ORDERS for i in range(size - n + 1)]
            known = memo[word] = [
                crc(b"c" + g.encode("utf-8", "surrogatepass")) & mask for g in grams
            ]
        buckets += known
    return buckets


def window_counts(
    text: str, size: int | None = SENTENCE_CHARS
) -> tuple[list[tuple[Counter[int], Counter[int]]], int]:
    """``term_counts`` of every window, then of every run of sentences of at
    most ``size`` characters (none when ``size`` is None), and how many of
    them are wide windows. Runs are split at whitespace, where no token or
    padded word crosses, so each sentence is counted once and a run's counts
    are its sentences' joined: the same counts as featurizing the run's
    text, at half the cost."""
    memo: dict[str, list[int]] = {}
    wide = [term_counts(window, memo) for window in windows(text)]
    if size is None or len(text) <= size:
        return wide, len(wide)
    spans = sentence_spans(text, size)
    pieces = [text[start:end].lower() for start, end in spans]
    tokens = [_TOKEN.findall(piece) for piece in pieces]
    chars = [_char_buckets(piece, memo) for piece in pieces]
    runs = [
        (
            Counter(_word_buckets(list(itertools.chain.from_iterable(tokens[a : b + 1])))),
            Counter(itertools.chain.from_iterable(chars[a : b + 1])),
        )
        for a, b in _runs(spans, size)
    ]
    return wide + runs, len(wide)


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
                self.sentence_offsets = {n: float(arrays[f"{n}_sentence_offset"]) for n in HEADS}
                self.sentence_chars = int(arrays["sentence_chars"])
        except (OSError, ValueError, KeyError) as exc:
            raise DetectorError(f"cannot read the lexical model: {exc}") from None
        if self.sentence_chars < 16:
            raise DetectorError("the lexical model's runs of sentences are too short")
        if idf.shape != (2 * BUCKETS,) or any(c.shape != idf.shape for c in coefs.values()):
            raise DetectorError("the lexical model was built for another bucket count")
        self.idf = idf
        self.coefs = coefs

    def score(self, text: str, head: str, sentence_runs: bool = True) -> float:
        """Highest window probability under ``head``: the logistic function of
        ``bias + coef . features(window)`` (less the head's sentence offset
        for a run of sentences; no runs when ``sentence_runs`` is off). One
        numpy pass over every window's buckets: a 4,000-character text has
        about 70 windows, and a pass per window cost more than the arithmetic."""
        import numpy as np

        counts, wide = window_counts(text, self.sentence_chars if sentence_runs else None)
        families = [family for pair in counts for family in pair]  # window i: 2i, 2i + 1
        sizes = np.fromiter((len(f) for f in families), np.int64, len(families))
        total = int(sizes.sum())
        index = np.fromiter(itertools.chain.from_iterable(families), np.int64, total)
        index += np.repeat(np.tile(np.array([0, BUCKETS]), len(counts)), sizes)
        tf = np.fromiter(
            itertools.chain.from_iterable(f.values() for f in families), np.float64, total
        )
        segment = np.repeat(np.arange(len(families)), sizes)
        weights = (1.0 + np.log(tf)) * self.idf[index]
        norms = np.sqrt(np.bincount(segment, weights * weights, len(families)).astype(float))
        dots = np.bincount(segment, weights * self.coefs[head][index], len(families)).astype(float)
        scaled = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        logits = self.biases[head] + scaled.reshape(-1, 2).sum(axis=1)
        logits[wide:] -= self.sentence_offsets[head]
        best = float(logits.max())
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, best))))
