"""Detection quality metrics: pure functions over labels and spans, so the CLI,
benchmarks and tests all score detectors the same way."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

ANY_LABEL = "*"


class Span(NamedTuple):
    start: int
    end: int
    label: str


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; ``q`` in 0..100. Empty input gives 0.0."""
    if not values:
        return 0.0
    ordered = sorted(values)
    # Round off float noise first: 250 * 64.4 / 100 is 161.00000000000003, rank 161.
    rank = max(1, math.ceil(round(len(ordered) * q / 100, 9)))
    return float(ordered[min(rank, len(ordered)) - 1])


def classification_report(
    labels: Sequence[int],
    predictions: Sequence[int],
    latencies_ms: Sequence[float] = (),
) -> dict[str, Any]:
    if len(labels) != len(predictions):
        raise ValueError("labels and predictions differ in length")
    tp = sum(1 for y, p in zip(labels, predictions, strict=True) if y and p)
    fp = sum(1 for y, p in zip(labels, predictions, strict=True) if not y and p)
    tn = sum(1 for y, p in zip(labels, predictions, strict=True) if not y and not p)
    fn = sum(1 for y, p in zip(labels, predictions, strict=True) if y and not p)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    tnr = _ratio(tn, tn + fp)
    # With only one class present, balanced accuracy is that class's rate.
    has_pos, has_neg = tp + fn > 0, tn + fp > 0
    rates = [rate for rate, present in ((recall, has_pos), (tnr, has_neg)) if present]
    balanced = sum(rates) / len(rates) if rates else 0.0
    return {
        "n": len(labels),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "tpr": recall,
        "fpr": _ratio(fp, fp + tn),
        "f1": _ratio(2 * precision * recall, precision + recall),
        "balanced_accuracy": balanced,
        "latency_ms_p50": percentile(latencies_ms, 50),
        "latency_ms_p99": percentile(latencies_ms, 99),
    }


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def _matches(gold: Span, pred: Span, *, exact: bool, label_agnostic: bool) -> bool:
    if not label_agnostic and gold.label != pred.label:
        return False
    if exact:
        return gold.start == pred.start and gold.end == pred.end
    return gold.start < pred.end and pred.start < gold.end


def _match_mode(
    gold: Sequence[Sequence[Span]],
    predicted: Sequence[Sequence[Span]],
    *,
    exact: bool,
    label_agnostic: bool,
) -> dict[str, Any]:
    """Greedy one-to-one matching per document: each gold span is credited at
    most once and each prediction counts for at most one gold span."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # tp, fp, fn
    for gold_spans, pred_spans in zip(gold, predicted, strict=True):
        used: set[int] = set()
        for g in gold_spans:
            key = ANY_LABEL if label_agnostic else g.label
            hit = next(
                (
                    i
                    for i, p in enumerate(pred_spans)
                    if i not in used and _matches(g, p, exact=exact, label_agnostic=label_agnostic)
                ),
                None,
            )
            if hit is None:
                counts[key][2] += 1
            else:
                used.add(hit)
                counts[key][0] += 1
        for i, p in enumerate(pred_spans):
            if i not in used:
                counts[ANY_LABEL if label_agnostic else p.label][1] += 1
    per_label = {label: _prf(*c) for label, c in sorted(counts.items())}
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {"micro": _prf(*total), "per_label": per_label}


def span_report(
    gold: Sequence[Sequence[Span]],
    predicted: Sequence[Sequence[Span]],
    *,
    label_agnostic: bool = False,
) -> dict[str, Any]:
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    return {
        mode: _match_mode(gold, predicted, exact=mode == "exact", label_agnostic=label_agnostic)
        for mode in ("exact", "overlap")
    }
