"""KGW parameters and the generation-time logits processor.

The processor adds ``delta`` to the logits of the green tokens of the current
context before llama.cpp samples, so the text carries a statistical signal
that only the key holder can test for (Kirchenbauer et al., 2023).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mantlet.watermark import _prf

SCHEME = _prf.SCHEME


@dataclass(frozen=True)
class WatermarkParams:
    """What a detector must know besides the key; safe to publish.

    ``context`` is h, the number of previous tokens the green list depends
    on; 0 is the context-free "unigram" mode (one fixed green list per key:
    most robust to edits, easiest to learn from many samples).
    """

    gamma: float = 0.25
    delta: float = 2.0
    context: int = 1

    def __post_init__(self) -> None:
        _prf.threshold(self.gamma)  # validates gamma
        if not 0.0 <= self.delta <= 20.0:
            raise ValueError("delta must lie in [0, 20]")
        if not 0 <= self.context <= 8:
            raise ValueError("context (h) must lie in [0, 8]")

    def describe(self, key_id: str) -> dict[str, Any]:
        """Key id and parameters for a provenance manifest (never the key)."""
        return {
            "scheme": SCHEME,
            "key_id": key_id,
            "gamma": self.gamma,
            "delta": self.delta,
            "h": self.context,
        }

    def header(self, key_id: str) -> str:
        """The ``x-mantlet-watermark`` header value."""
        return (
            f"scheme=kgw;version={SCHEME};key_id={key_id};gamma={self.gamma};"
            f"delta={self.delta};h={self.context}"
        )


class GreenLists:
    """Green lists of one key: full masks for generation, one-token
    membership tests for detection. A small cache holds the masks of the
    most recent contexts (with h = 1, a handful of tokens such as " the" or
    "," start a large share of steps)."""

    def __init__(self, key: bytes, params: WatermarkParams, cache_size: int = 256) -> None:
        self._key = key
        self.params = params
        self._limit = _prf.threshold(params.gamma)
        self._mixer: _prf.VocabMixer | None = None
        self._cache: OrderedDict[tuple[int, ...], npt.NDArray[np.float32]] = OrderedDict()
        self._cache_size = cache_size

    def __repr__(self) -> str:  # never show the key
        return f"GreenLists(params={self.params!r})"

    def context_of(self, ids: Any, end: int) -> tuple[int, ...]:
        """The h token ids before position ``end``."""
        h = self.params.context
        return tuple(int(t) for t in ids[end - h : end]) if h else ()

    def seed(self, context: tuple[int, ...]) -> int:
        return _prf.context_seed(self._key, context)

    def is_green(self, context: tuple[int, ...], token: int) -> bool:
        return _prf.is_green(self.seed(context), token, self._limit)

    def seed_is_green(self, seed: int, token: int) -> bool:
        return _prf.is_green(seed, token, self._limit)

    def mask(self, context: tuple[int, ...], vocab_size: int) -> npt.NDArray[np.bool_]:
        if self._mixer is None or self._mixer.vocab_size != vocab_size:
            self._mixer = _prf.VocabMixer(vocab_size)
            self._cache.clear()
        return self._mixer.green_mask(self.seed(context), self._limit)

    def bias(self, context: tuple[int, ...], vocab_size: int) -> npt.NDArray[np.float32]:
        """``delta`` on green tokens, 0 elsewhere (cached per context)."""
        cached = self._cache.get(context)
        if cached is not None and cached.shape[0] == vocab_size:
            self._cache.move_to_end(context)
            return cached
        bias = self.mask(context, vocab_size).astype(np.float32)
        bias *= np.float32(self.params.delta)
        self._cache[context] = bias
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return bias


class WatermarkLogitsProcessor:
    """A llama-cpp-python ``logits_processor``: ``(input_ids, scores) -> scores``.

    ``input_ids`` holds the prompt and the tokens generated so far, so the
    context of the token being sampled is its last h entries. Contexts that
    reach into the prompt are fine: the detector simply never scores the
    first h tokens of a text.
    """

    def __init__(self, green: GreenLists) -> None:
        self.green = green

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        h = self.green.params.context
        if h and len(input_ids) < h:
            return scores
        context = self.green.context_of(input_ids, len(input_ids))
        scores += self.green.bias(context, len(scores))
        return scores
