"""Watermark detection from token ids: count green tokens, test against the
null hypothesis "this text was written without the key".

Under the null each distinct (context, token) pair is green with probability
gamma independently (see ``_prf``), so the green count of T distinct pairs is
Binomial(T, gamma). Repeated pairs are skipped: repetitive text ("the the
the", code boilerplate) would otherwise count the same coin flip many times.
The verdict uses the exact binomial tail p-value; ``z`` is the usual KGW
statistic (z = 4.26 is p ~ 1e-5 in the normal approximation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from mantlet.watermark.scheme import GreenLists

Verdict = Literal["watermarked", "not watermarked", "insufficient tokens"]
DEFAULT_ALPHA = 1e-5  # false-positive rate per text (and per key tried)
DEFAULT_MIN_TOKENS = 32
WINDOW_SIZES = (64, 128, 256)


@dataclass(frozen=True)
class Detection:
    verdict: Verdict
    z: float | None
    p_value: float | None
    tokens: int  # distinct (context, token) pairs scored
    green: int
    key_id: str | None = None
    keys_tried: int = 1
    start: int | None = None  # token offsets of the best window (windowed mode)
    end: int | None = None
    windows: int | None = None

    @property
    def watermarked(self) -> bool:
        return self.verdict == "watermarked"

    def to_dict(self) -> dict[str, Any]:
        """JSON form; z, p_value and key_id are null without a verdict, the
        window fields appear only in windowed mode."""
        window = ("start", "end", "windows")
        return {k: v for k, v in asdict(self).items() if v is not None or k not in window}


def green_flags(ids: Sequence[int], green: GreenLists) -> list[int]:
    """Per position: 1 green, 0 red, -1 not scored (first h tokens, repeats)."""
    h = green.params.context
    seen: set[tuple[tuple[int, ...], int]] = set()
    flags = [-1] * len(ids)
    seeds: dict[tuple[int, ...], int] = {}
    for i in range(h, len(ids)):
        context = tuple(ids[i - h : i])
        pair = (context, ids[i])
        if pair in seen:
            continue
        seen.add(pair)
        seed = seeds.get(context)
        if seed is None:
            seed = seeds[context] = green.seed(context)
        flags[i] = int(green.seed_is_green(seed, ids[i]))
    return flags


def z_score(green: int, tokens: int, gamma: float) -> float:
    return (green - gamma * tokens) / math.sqrt(tokens * gamma * (1.0 - gamma))


def binomial_sf(green: int, tokens: int, gamma: float) -> float:
    """P(X >= green) for X ~ Binomial(tokens, gamma), summed in log space."""
    if green <= 0:
        return 1.0
    if green > tokens:
        return 0.0
    log_g, log_r = math.log(gamma), math.log1p(-gamma)
    lgt = math.lgamma(tokens + 1)
    total = 0.0
    for k in range(green, tokens + 1):
        term = math.exp(
            lgt
            - math.lgamma(k + 1)
            - math.lgamma(tokens - k + 1)
            + k * log_g
            + (tokens - k) * log_r
        )
        total += term
        if term < total * 1e-17:
            break
    return min(1.0, total)


def _decide(
    green: int, tokens: int, gamma: float, alpha: float, min_tokens: int, tests: int
) -> Detection:
    if tokens < min_tokens:
        return Detection("insufficient tokens", None, None, tokens, green)
    p = min(1.0, binomial_sf(green, tokens, gamma) * tests)
    z = z_score(green, tokens, gamma)
    return Detection("watermarked" if p <= alpha else "not watermarked", z, p, tokens, green)


def detect_ids(
    ids: Sequence[int],
    green: GreenLists,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_tokens: int = DEFAULT_MIN_TOKENS,
) -> Detection:
    """Whole-text test with one key."""
    flags = green_flags(ids, green)
    scored = [f for f in flags if f >= 0]
    return _decide(sum(scored), len(scored), green.params.gamma, alpha, min_tokens, 1)


def detect_windows(
    ids: Sequence[int],
    green: GreenLists,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_tokens: int = DEFAULT_MIN_TOKENS,
    sizes: Sequence[int] = WINDOW_SIZES,
) -> Detection:
    """Find a watermarked passage inside longer text: slide windows of each
    size (half-window stride) over the scored tokens and keep the most
    significant one. Its p-value is multiplied by the number of windows
    tested (Bonferroni), so scanning many windows does not inflate the
    false-positive rate."""
    flags = green_flags(ids, green)
    positions = [i for i, f in enumerate(flags) if f >= 0]
    values = [flags[i] for i in positions]
    n = len(values)
    gamma = green.params.gamma
    if n < min_tokens:
        return Detection("insufficient tokens", None, None, n, sum(values))
    prefix = [0]
    for v in values:
        prefix.append(prefix[-1] + v)
    spans: set[tuple[int, int]] = {(0, n)}
    for size in sizes:
        if size >= n or size < min_tokens:
            continue
        stride = max(1, size // 2)
        starts = list(range(0, n - size + 1, stride))
        if starts[-1] != n - size:
            starts.append(n - size)
        spans.update((s, s + size) for s in starts)
    best: tuple[float, int, int] | None = None
    for s, e in spans:
        z = z_score(prefix[e] - prefix[s], e - s, gamma)
        if best is None or z > best[0]:
            best = (z, s, e)
    assert best is not None
    _, s, e = best
    result = _decide(prefix[e] - prefix[s], e - s, gamma, alpha, min_tokens, len(spans))
    end = positions[e - 1] + 1
    return replace(result, start=positions[s], end=end, windows=len(spans))


def detect_with_keys(
    ids: Sequence[int],
    keys: Sequence[tuple[str, GreenLists]],
    *,
    windowed: bool = False,
    alpha: float = DEFAULT_ALPHA,
    min_tokens: int = DEFAULT_MIN_TOKENS,
) -> Detection:
    """Test every (key_id, green lists) pair; report the most significant,
    with its p-value multiplied by the number of keys tried."""
    if not keys:
        raise ValueError("no watermark key to test")
    results = []
    for key_id, green in keys:
        if windowed:
            found = detect_windows(ids, green, alpha=alpha, min_tokens=min_tokens)
        else:
            found = detect_ids(ids, green, alpha=alpha, min_tokens=min_tokens)
        results.append(replace(found, key_id=key_id))
    best = max(results, key=lambda d: -1e9 if d.z is None else d.z)
    if best.p_value is None:
        return replace(best, keys_tried=len(keys))
    p = min(1.0, best.p_value * len(keys))
    verdict: Verdict = "watermarked" if p <= alpha else "not watermarked"
    return replace(best, p_value=p, verdict=verdict, keys_tried=len(keys))
