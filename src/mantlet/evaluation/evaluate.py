"""Scoring one detector on labelled rows, exactly as the pipeline would apply
it (same options, same threshold), but without timeouts so every row counts."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mantlet.core.registry import create
from mantlet.core.types import PartKind, ScanContext, Side
from mantlet.evaluation.dataset import Row
from mantlet.evaluation.metrics import Span, classification_report, span_report
from mantlet.policy.model import Policy


def evaluate(
    detector_name: str,
    rows: Sequence[Row],
    policy: Policy,
    *,
    side: Side = Side.INPUT,
    part: PartKind | None = None,
    threshold: float | None = None,
    on_row: Callable[[], None] | None = None,
    options: Mapping[str, Any] | None = None,
    label_aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``options`` override the policy's detector options; ``label_aliases``
    rename gold labels before matching (a dataset's ``GPE`` is the detector's
    ``LOCATION``)."""
    settings = policy.detectors.get(detector_name)
    options = {**(settings.options if settings else {}), **(options or {})}
    aliases = dict(label_aliases or {})
    cutoff = threshold if threshold is not None else (settings.threshold if settings else 0.5)
    detector = create(detector_name, options)
    default_part = PartKind.PROMPT if side is Side.INPUT else PartKind.COMPLETION
    context = ScanContext(side=side, part=part or default_part)

    labels: list[int] = []
    predictions: list[int] = []
    gold_spans: list[tuple[Span, ...]] = []
    predicted_spans: list[list[Span]] = []
    latencies: list[float] = []
    errors = 0
    total_chars = 0
    started = time.perf_counter()
    for row in rows:
        t0 = time.perf_counter()
        try:
            found = [f for f in detector.detect(row.text, context) if f.score >= cutoff]
            failed = False
        except Exception:  # noqa: BLE001 - counted and scored as a detection (fail closed)
            found, failed = [], True
            errors += 1
        latencies.append((time.perf_counter() - t0) * 1000)
        total_chars += len(row.text)
        if row.label is not None:
            labels.append(row.label)
            predictions.append(1 if (found or failed) else 0)
        if row.spans is not None:
            gold_spans.append(
                tuple(Span(g.start, g.end, aliases.get(g.label, g.label)) for g in row.spans)
            )
            predicted_spans.append([Span(f.start, f.end, f.kind) for f in found])
        if on_row:
            on_row()
    elapsed = time.perf_counter() - started

    report: dict[str, Any] = {"detector": detector_name, "threshold": cutoff, "errors": errors}
    if labels:
        report.update(classification_report(labels, predictions, latencies))
    else:
        report["n"] = len(rows)
    if gold_spans:
        by_label = span_report(gold_spans, predicted_spans, label_agnostic=False)
        report["spans"] = {
            "label_agnostic": span_report(gold_spans, predicted_spans, label_agnostic=True),
            "by_label": by_label,
        }
        report["entities"] = entity_table(by_label)
        if aliases:
            report["label_aliases"] = aliases
    report["throughput_chars_per_s"] = total_chars / elapsed if elapsed else 0.0
    report["latency_ms_p50"] = report.get("latency_ms_p50", 0.0) or _pct(latencies, 50)
    report["latency_ms_p99"] = report.get("latency_ms_p99", 0.0) or _pct(latencies, 99)
    return report


def entity_table(by_label: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{ENTITY: {exact: {precision, recall, f1, ...}, overlap: {...}}}``: the
    per-entity view of a by-label span report."""
    table: dict[str, dict[str, Any]] = {}
    for mode in ("exact", "overlap"):
        for label, scores in by_label[mode]["per_label"].items():
            table.setdefault(label, {})[mode] = scores
    return dict(sorted(table.items()))


def _pct(values: list[float], q: float) -> float:
    from mantlet.evaluation.metrics import percentile

    return percentile(values, q)
