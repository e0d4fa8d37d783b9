from __future__ import annotations

from collections.abc import Sequence

import pytest

from mantlet.evaluation.metrics import Span, classification_report, percentile, span_report

# -- percentile ------------------------------------------------------------------------

ONE_TO_TEN = [float(v) for v in range(1, 11)]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([], 50, 0.0, id="empty"),
        pytest.param([], 99, 0.0, id="empty-p99"),
        pytest.param([7.5], 0, 7.5, id="single-p0"),
        pytest.param([7.5], 50, 7.5, id="single-p50"),
        pytest.param([7.5], 100, 7.5, id="single-p100"),
        pytest.param(ONE_TO_TEN, 0, 1.0, id="p0-is-min"),
        pytest.param(ONE_TO_TEN, 10, 1.0, id="p10"),
        pytest.param(ONE_TO_TEN, 11, 2.0, id="p11-rounds-rank-up"),
        pytest.param(ONE_TO_TEN, 50, 5.0, id="p50"),
        pytest.param(ONE_TO_TEN, 51, 6.0, id="p51"),
        pytest.param(ONE_TO_TEN, 90, 9.0, id="p90"),
        pytest.param(ONE_TO_TEN, 99, 10.0, id="p99"),
        pytest.param(ONE_TO_TEN, 100, 10.0, id="p100-is-max"),
        pytest.param(ONE_TO_TEN, 150, 10.0, id="above-100-clamped"),
        pytest.param(ONE_TO_TEN, -5, 1.0, id="below-0-clamped"),
        pytest.param([3.0, 1.0, 2.0], 50, 2.0, id="unsorted"),
        pytest.param([1.0, 2.0], 50, 1.0, id="even-count-nearest-rank"),
        pytest.param([5.0, 5.0, 5.0, 100.0], 75, 5.0, id="duplicates"),
        # fractional q: 250 * 64.4 / 100 is 161 exactly, not 161.00000000000003
        pytest.param([float(v) for v in range(1, 251)], 64.4, 161.0, id="fractional-q"),
        pytest.param([float(v) for v in range(1, 1001)], 99.9, 999.0, id="p99.9"),
        pytest.param([float(v) for v in range(1, 1001)], 99.95, 1000.0, id="p99.95"),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_percentile_returns_float_and_does_not_sort_in_place() -> None:
    values = [3, 1, 2]
    result = percentile(values, 100)
    assert result == 3.0
    assert isinstance(result, float)
    assert values == [3, 1, 2]


# -- classification ------------------------------------------------------------------------


def test_classification_report_hand_computed() -> None:
    labels = [1, 1, 1, 0, 0, 0, 0]
    predictions = [1, 1, 0, 1, 0, 0, 0]  # tp=2 fn=1 fp=1 tn=3
    report = classification_report(labels, predictions, [4.0, 1.0, 3.0, 2.0])
    assert {k: report[k] for k in ("n", "tp", "fp", "tn", "fn")} == {
        "n": 7,
        "tp": 2,
        "fp": 1,
        "tn": 3,
        "fn": 1,
    }
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["tpr"] == report["recall"]
    assert report["fpr"] == pytest.approx(1 / 4)
    assert report["f1"] == pytest.approx(2 / 3)
    assert report["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert report["latency_ms_p50"] == 2.0
    assert report["latency_ms_p99"] == 4.0


def test_classification_report_perfect_and_inverted() -> None:
    perfect = classification_report([1, 0, 1, 0], [1, 0, 1, 0])
    assert (perfect["precision"], perfect["recall"], perfect["f1"]) == (1.0, 1.0, 1.0)
    assert perfect["balanced_accuracy"] == 1.0
    assert perfect["fpr"] == 0.0
    inverted = classification_report([1, 0, 1, 0], [0, 1, 0, 1])
    assert (inverted["precision"], inverted["recall"], inverted["f1"]) == (0.0, 0.0, 0.0)
    assert inverted["balanced_accuracy"] == 0.0
    assert inverted["fpr"] == 1.0


@pytest.mark.parametrize(
    ("labels", "predictions", "balanced"),
    [
        pytest.param([1, 1, 1, 1], [1, 0, 0, 0], 0.25, id="only-positives-uses-recall"),
        pytest.param([0, 0, 0, 0], [1, 0, 0, 0], 0.75, id="only-negatives-uses-tnr"),
        pytest.param([], [], 0.0, id="empty"),
    ],
)
def test_balanced_accuracy_with_one_class(
    labels: list[int], predictions: list[int], balanced: float
) -> None:
    assert classification_report(labels, predictions)["balanced_accuracy"] == balanced


def test_no_positive_predictions_gives_zero_not_division_error() -> None:
    report = classification_report([1, 0, 0], [0, 0, 0])
    assert report["precision"] == 0.0
    assert report["f1"] == 0.0
    assert report["recall"] == 0.0
    assert report["latency_ms_p50"] == 0.0  # no latencies given


def test_classification_report_truthy_values() -> None:
    assert classification_report([True, False], [True, True])["fp"] == 1


def test_classification_report_length_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        classification_report([1, 0], [1])


# -- spans -----------------------------------------------------------------------------------


def prf(report: dict[str, object], mode: str, label: str | None = None) -> tuple[int, int, int]:
    block = report[mode]
    assert isinstance(block, dict)
    counts = block["micro"] if label is None else block["per_label"][label]
    return counts["tp"], counts["fp"], counts["fn"]


def test_exact_versus_overlap() -> None:
    gold = [[Span(0, 5, "A"), Span(10, 15, "B")]]
    predicted = [[Span(0, 5, "A"), Span(11, 15, "B")]]
    report = span_report(gold, predicted)
    assert prf(report, "exact") == (1, 1, 1)
    assert prf(report, "exact", "A") == (1, 0, 0)
    assert prf(report, "exact", "B") == (0, 1, 1)
    assert prf(report, "overlap") == (2, 0, 0)
    exact = report["exact"]["micro"]
    assert exact["precision"] == 0.5
    assert exact["recall"] == 0.5
    assert exact["f1"] == 0.5
    assert report["overlap"]["micro"]["f1"] == 1.0


def test_label_aware_versus_label_agnostic() -> None:
    gold = [[Span(0, 5, "EMAIL")]]
    predicted = [[Span(0, 5, "PHONE")]]
    aware = span_report(gold, predicted)
    assert prf(aware, "exact", "EMAIL") == (0, 0, 1)
    assert prf(aware, "exact", "PHONE") == (0, 1, 0)
    assert prf(aware, "overlap") == (0, 1, 1)
    agnostic = span_report(gold, predicted, label_agnostic=True)
    assert set(agnostic["exact"]["per_label"]) == {"*"}
    assert prf(agnostic, "exact") == (1, 0, 0)
    assert prf(agnostic, "overlap", "*") == (1, 0, 0)


@pytest.mark.parametrize(
    ("gold", "predicted", "overlap_counts"),
    [
        pytest.param(
            [Span(0, 10, "A")],
            [Span(0, 3, "A"), Span(5, 10, "A")],
            (1, 1, 0),
            id="one-gold-credited-once",
        ),
        pytest.param(
            [Span(0, 3, "A"), Span(5, 8, "A")],
            [Span(0, 8, "A")],
            (1, 0, 1),
            id="one-prediction-used-once",
        ),
        pytest.param([Span(0, 5, "A")], [Span(5, 9, "A")], (0, 1, 1), id="touching-is-a-miss"),
        pytest.param([Span(0, 5, "A")], [Span(4, 9, "A")], (1, 0, 0), id="one-char-overlap"),
        pytest.param([], [Span(0, 1, "A")], (0, 1, 0), id="no-gold"),
        pytest.param([Span(0, 1, "A")], [], (0, 0, 1), id="no-prediction"),
        pytest.param([], [], (0, 0, 0), id="empty-document"),
    ],
)
def test_overlap_matching_is_one_to_one(
    gold: list[Span], predicted: list[Span], overlap_counts: tuple[int, int, int]
) -> None:
    assert prf(span_report([gold], [predicted]), "overlap") == overlap_counts


def test_span_report_over_several_documents() -> None:
    gold: Sequence[Sequence[Span]] = [
        [Span(0, 4, "KEY")],
        [],
        [Span(2, 6, "KEY"), Span(10, 12, "PW")],
    ]
    predicted: Sequence[Sequence[Span]] = [
        [Span(0, 4, "KEY")],
        [Span(1, 2, "PW")],
        [Span(2, 7, "KEY")],
    ]
    report = span_report(gold, predicted)
    assert prf(report, "exact") == (1, 2, 2)
    assert prf(report, "overlap") == (2, 1, 1)
    assert list(report["overlap"]["per_label"]) == ["KEY", "PW"]  # sorted
    assert prf(report, "overlap", "KEY") == (2, 0, 0)
    assert prf(report, "overlap", "PW") == (0, 1, 1)
    micro = report["overlap"]["micro"]
    assert micro["precision"] == pytest.approx(2 / 3)
    assert micro["recall"] == pytest.approx(2 / 3)
    assert micro["f1"] == pytest.approx(2 / 3)


def test_span_report_without_any_spans() -> None:
    report = span_report([[], []], [[], []])
    assert report["exact"]["per_label"] == {}
    assert report["exact"]["micro"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "tp": 0,
        "fp": 0,
        "fn": 0,
    }


def test_span_report_length_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        span_report([[Span(0, 1, "A")]], [])
