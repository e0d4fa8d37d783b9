from __future__ import annotations

import json
from pathlib import Path

import pytest

from mantlet.core.types import Finding, ScanContext, Side
from mantlet.evaluation.dataset import load_rows
from mantlet.evaluation.evaluate import evaluate
from mantlet.policy import Policy, load_policy_text

POLICY = load_policy_text(
    """
detectors:
  regex:
    threshold: 0.5
    options:
      patterns:
        - {kind: TOKEN, pattern: "tok-[0-9]{4}"}
        - {kind: WEAK, pattern: "maybe", score: 0.3}
"""
)


def _write(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


CLASSIFICATION = [
    {"text": "deploy with tok-1234", "label": 1},  # tp
    {"text": "nothing to see", "label": 0},  # tn
    {"text": "tok-12 is too short", "label": 1},  # fn
    {"text": "public ticket tok-0000", "label": 0},  # fp
    {"text": "maybe a secret", "label": 1},  # fn at 0.5, tp at 0.2
]


def test_evaluate_classification_on_jsonl(tmp_path: Path) -> None:
    rows = load_rows(_write(tmp_path, CLASSIFICATION))
    calls: list[None] = []
    report = evaluate("regex", rows, POLICY, on_row=lambda: calls.append(None))
    assert report["detector"] == "regex"
    assert report["threshold"] == 0.5
    assert report["errors"] == 0
    assert {k: report[k] for k in ("n", "tp", "fp", "tn", "fn")} == {
        "n": 5,
        "tp": 1,
        "fp": 1,
        "tn": 1,
        "fn": 2,
    }
    assert report["precision"] == pytest.approx(0.5)
    assert report["recall"] == pytest.approx(1 / 3)
    assert "spans" not in report
    assert len(calls) == 5
    assert report["throughput_chars_per_s"] > 0
    assert report["latency_ms_p99"] >= report["latency_ms_p50"] > 0


def test_threshold_override(tmp_path: Path) -> None:
    rows = load_rows(_write(tmp_path, CLASSIFICATION))
    report = evaluate("regex", rows, POLICY, threshold=0.2)
    assert report["threshold"] == 0.2
    assert (report["tp"], report["fn"]) == (2, 1)  # the weak pattern now counts


def test_evaluate_spans_on_jsonl(tmp_path: Path) -> None:
    rows = load_rows(
        _write(
            tmp_path,
            [
                {"text": "a tok-1111 b", "spans": [{"start": 2, "end": 10, "label": "TOKEN"}]},
                {"text": "xtok-22223", "spans": [{"start": 1, "end": 10, "label": "TOKEN"}]},
                {"text": "none", "spans": []},
                {"text": "tok-3333", "spans": [{"start": 0, "end": 8, "label": "SECRET"}]},
            ],
        )
    )
    report = evaluate("regex", rows, POLICY)
    assert report["n"] == 4  # no labels: only a row count
    assert "tp" not in report
    agnostic = report["spans"]["label_agnostic"]
    assert agnostic["exact"]["micro"]["tp"] == 2  # rows 1 and 4
    assert agnostic["overlap"]["micro"]["tp"] == 3
    by_label = report["spans"]["by_label"]
    assert by_label["exact"]["per_label"]["TOKEN"]["tp"] == 1
    assert by_label["overlap"]["per_label"]["TOKEN"]["tp"] == 2
    assert by_label["overlap"]["per_label"]["SECRET"]["fn"] == 1  # predicted TOKEN, not SECRET


def test_errors_count_as_detections(register_detector, tmp_path: Path) -> None:
    def fail_on_b(text: str, ctx: ScanContext) -> list[Finding]:
        if "b" in text:
            raise RuntimeError("broken")
        return []

    name = register_detector("test_eval_boom", fail_on_b)
    rows = load_rows(_write(tmp_path, [{"text": "a", "label": 0}, {"text": "b", "label": 0}]))
    report = evaluate(name, rows, Policy())
    assert report["errors"] == 1
    assert (report["tn"], report["fp"]) == (1, 1)  # the failed row is scored as a detection


def test_detector_not_in_policy_uses_defaults(register_detector, tmp_path: Path) -> None:
    seen: list[ScanContext] = []

    def detect(text: str, ctx: ScanContext) -> list[Finding]:
        seen.append(ctx)
        return [Finding("x", "K", 0, 1, 0.5)] if text == "hit" else []

    name = register_detector("test_eval_defaults", detect)
    rows = load_rows(_write(tmp_path, [{"text": "hit", "label": 1}, {"text": "miss", "label": 0}]))
    report = evaluate(name, rows, Policy(), side=Side.OUTPUT)
    assert report["threshold"] == 0.5
    assert (report["tp"], report["tn"]) == (1, 1)  # score 0.5 meets the default threshold
    assert {ctx.side for ctx in seen} == {Side.OUTPUT}
    assert register_detector.options_seen[name] == [{}]
