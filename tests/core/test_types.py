from __future__ import annotations

import dataclasses
import json
import math

import pytest

from mantlet.core.types import (
    Action,
    Detector,
    DetectorReport,
    Finding,
    PartKind,
    RunStatus,
    ScanContext,
    Side,
    Verdict,
)
from mantlet.detectors.invisible_text import InvisibleTextDetector, InvisibleTextOptions


@pytest.mark.parametrize(
    ("declared", "checked", "expected"),
    [
        (Side.BOTH, Side.INPUT, True),
        (Side.BOTH, Side.OUTPUT, True),
        (Side.INPUT, Side.INPUT, True),
        (Side.OUTPUT, Side.OUTPUT, True),
        (Side.INPUT, Side.OUTPUT, False),
        (Side.OUTPUT, Side.INPUT, False),
    ],
)
def test_side_covers(declared: Side, checked: Side, expected: bool) -> None:
    assert declared.covers(checked) is expected


def test_enums_parse_from_their_yaml_spelling() -> None:
    assert Side("input") is Side.INPUT
    assert Action("redact") is Action.REDACT
    assert RunStatus("timeout") is RunStatus.TIMEOUT
    assert PartKind("tool_call") is PartKind.TOOL_CALL
    with pytest.raises(ValueError):
        Action("BLOCK")  # values are lower case


def test_action_severity_is_strictly_ordered() -> None:
    ordered = [Action.ALLOW, Action.FLAG, Action.REDACT, Action.BLOCK]
    severities = [a.severity for a in ordered]
    assert severities == sorted(severities)
    assert len(set(severities)) == len(ordered)


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        ([], Action.ALLOW),
        ((), Action.ALLOW),
        ([Action.ALLOW], Action.ALLOW),
        ([Action.FLAG, Action.ALLOW], Action.FLAG),
        ([Action.FLAG, Action.REDACT, Action.ALLOW], Action.REDACT),
        ((Action.REDACT, Action.BLOCK, Action.FLAG), Action.BLOCK),
        ([Action.BLOCK, Action.BLOCK], Action.BLOCK),
    ],
)
def test_most_severe(actions: list[Action], expected: Action) -> None:
    assert Action.most_severe(actions) is expected


@pytest.mark.parametrize(
    ("start", "end", "score"),
    [(0, 0, 0.0), (0, 5, 1.0), (3, 3, 0.5), (10, 20, 0.0001)],
)
def test_finding_accepts_valid_spans_and_scores(start: int, end: int, score: float) -> None:
    f = Finding("d", "K", start, end, score)
    assert (f.start, f.end, f.score) == (start, end, score)
    assert f.action is None
    assert f.location is None


@pytest.mark.parametrize(
    ("start", "end", "score", "message"),
    [
        (-1, 3, 0.5, "invalid span"),
        (5, 4, 0.5, "invalid span"),
        (0, 1, -0.01, "outside 0..1"),
        (0, 1, 1.01, "outside 0..1"),
        (0, 1, math.nan, "outside 0..1"),
    ],
)
def test_finding_rejects_bad_spans_and_scores(
    start: int, end: int, score: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Finding("d", "K", start, end, score)


def test_finding_is_frozen() -> None:
    f = Finding("d", "K", 0, 1, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.start = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 5), (4, 10), True),  # partial overlap
        ((0, 10), (2, 3), True),  # containment
        ((0, 5), (0, 5), True),  # identical
        ((0, 5), (5, 10), False),  # touching is not overlapping
        ((0, 5), (6, 10), False),  # disjoint
        ((3, 3), (3, 3), False),  # empty spans never overlap each other
    ],
)
def test_finding_overlaps_is_symmetric(
    a: tuple[int, int], b: tuple[int, int], expected: bool
) -> None:
    fa = Finding("d", "K", a[0], a[1], 1.0)
    fb = Finding("d", "K", b[0], b[1], 1.0)
    assert fa.overlaps(fb) is expected
    assert fb.overlaps(fa) is expected


def test_finding_to_dict_rounds_score_and_serialises_action() -> None:
    f = Finding("regex", "TOKEN", 2, 9, 0.123456, detail="policy pattern", location="text")
    assert f.to_dict() == {
        "detector": "regex",
        "kind": "TOKEN",
        "start": 2,
        "end": 9,
        "score": 0.1235,
        "detail": "policy pattern",
        "location": "text",
        "action": None,
    }
    blocked = dataclasses.replace(f, action=Action.BLOCK)
    assert blocked.to_dict()["action"] == "block"
    # ALLOW is a valid action too and must not be dropped as falsy.
    assert dataclasses.replace(f, action=Action.ALLOW).to_dict()["action"] == "allow"


def test_finding_carries_offsets_not_values() -> None:
    field_names = {f.name for f in dataclasses.fields(Finding)}
    assert field_names == {
        "detector",
        "kind",
        "start",
        "end",
        "score",
        "detail",
        "location",
        "action",
    }


def test_scan_context_defaults() -> None:
    ctx = ScanContext()
    assert ctx.side is Side.INPUT
    assert ctx.part is PartKind.PROMPT
    assert ctx.role is None
    assert ctx.tenant is None
    assert dict(ctx.metadata) == {}
    # Each context gets its own metadata mapping.
    assert ScanContext().metadata is not ctx.metadata


def test_detector_protocol_is_runtime_checkable() -> None:
    assert isinstance(InvisibleTextDetector(InvisibleTextOptions()), Detector)

    class NoDetect:
        name = "x"
        sides = Side.BOTH

    assert not isinstance(NoDetect(), Detector)


def test_detector_report_to_dict() -> None:
    report = DetectorReport("regex", RunStatus.TIMEOUT, 12.34567, 0, "exceeded 10 ms")
    assert report.to_dict() == {
        "detector": "regex",
        "status": "timeout",
        "duration_ms": 12.346,
        "findings": 0,
        "reason": "exceeded 10 ms",
    }


def _verdict(**kwargs: object) -> Verdict:
    reports = (
        DetectorReport("a", RunStatus.OK, 1.5, 1),
        DetectorReport("b", RunStatus.ERROR, 2.0, 0, "RuntimeError"),
        DetectorReport("c", RunStatus.TIMEOUT, 3.0, 0, "exceeded 3 ms"),
        DetectorReport("d", RunStatus.SKIPPED, 0.0, 0, "disabled by policy"),
    )
    findings = (Finding("a", "K", 0, 3, 0.9, location="text", action=Action.FLAG),)
    defaults: dict[str, object] = {
        "action": Action.BLOCK,
        "side": Side.INPUT,
        "findings": findings,
        "reports": reports,
        "duration_ms": 7.12345,
    }
    defaults.update(kwargs)
    return Verdict(**defaults)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "blocked"),
    [(Action.BLOCK, True), (Action.REDACT, False), (Action.FLAG, False), (Action.ALLOW, False)],
)
def test_verdict_blocked(action: Action, blocked: bool) -> None:
    assert _verdict(action=action).blocked is blocked


def test_verdict_report_views() -> None:
    v = _verdict()
    assert v.timings_ms == {"a": 1.5, "b": 2.0, "c": 3.0}  # skipped detectors did not run
    assert v.errors == {"b": "RuntimeError", "c": "exceeded 3 ms"}
    assert v.detectors_with(RunStatus.OK) == ["a"]
    assert v.detectors_with(RunStatus.SKIPPED) == ["d"]


def test_verdict_to_dict_is_json_and_omits_unset_sanitized_fields() -> None:
    out = _verdict().to_dict()
    assert json.loads(json.dumps(out)) == out
    assert out["action"] == "block"
    assert out["side"] == "input"
    assert out["ran"] == ["a"]
    assert out["skipped"] == ["d"]
    assert out["errored"] == ["b", "c"]
    assert out["duration_ms"] == 7.123
    assert [d["detector"] for d in out["detectors"]] == ["a", "b", "c", "d"]
    assert out["findings"][0]["action"] == "flag"
    for key in ("sanitized_text", "sanitized_messages", "sanitized_documents"):
        assert key not in out


def test_verdict_to_dict_includes_sanitized_fields_when_set() -> None:
    msgs = [{"role": "user", "content": "<K_1>"}]
    out = _verdict(sanitized_text="", sanitized_messages=msgs, sanitized_documents=["d"]).to_dict()
    # An empty sanitized text is still a result, not "absent".
    assert out["sanitized_text"] == ""
    assert out["sanitized_messages"] == msgs
    assert out["sanitized_documents"] == ["d"]
