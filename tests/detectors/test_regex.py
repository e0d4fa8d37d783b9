from __future__ import annotations

from typing import Any

import pytest

from mantlet.core import registry
from mantlet.core.types import Detector, ScanContext, Side
from mantlet.detectors.regex import RegexDetector
from mantlet.errors import ConfigError

CTX = ScanContext()


def make(*rules: dict[str, Any]) -> Detector:
    return registry.create("regex", {"patterns": list(rules)})


def spans(detector: Detector, text: str) -> list[tuple[str, int, int]]:
    return [(f.kind, f.start, f.end) for f in detector.detect(text, CTX)]


def test_registered_under_its_name() -> None:
    detector = make()
    assert isinstance(detector, RegexDetector)
    assert isinstance(detector, Detector)
    assert detector.name == "regex"
    assert detector.sides is Side.BOTH


def test_no_patterns_no_findings() -> None:
    assert registry.create("regex").detect("anything at all", CTX) == []


TICKET = {"kind": "TICKET", "pattern": "JIRA-[0-9]{3,}"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see JIRA-123", [("TICKET", 4, 12)]),
        ("JIRA-1234 and JIRA-99999", [("TICKET", 0, 9), ("TICKET", 14, 24)]),
        # near misses
        ("JIRA-12", []),
        ("jira-123", []),  # case-sensitive by default
        ("JIRA 123", []),
        ("JIRA-", []),
    ],
)
def test_matches_and_near_misses(text: str, expected: list[tuple[str, int, int]]) -> None:
    assert spans(make(TICKET), text) == expected


def test_finding_fields() -> None:
    [finding] = make({**TICKET, "score": 0.7}).detect("x JIRA-555 y", CTX)
    assert finding.detector == "regex"
    assert finding.score == 0.7
    assert finding.detail == "policy pattern"
    assert "JIRA-555" not in repr(finding.to_dict())  # offsets, never the value


def test_ignore_case() -> None:
    detector = make({**TICKET, "ignore_case": True})
    assert spans(detector, "jira-123 Jira-456") == [("TICKET", 0, 8), ("TICKET", 9, 17)]


def test_every_rule_runs() -> None:
    detector = make(TICKET, {"kind": "CODENAME", "pattern": r"\bbluebird\b"})
    assert spans(detector, "bluebird JIRA-100 bluebirds") == [
        ("TICKET", 9, 17),
        ("CODENAME", 0, 8),
    ]


def test_offsets_are_code_point_indices() -> None:
    text = "héllo 🎉 JIRA-123 ünd"
    [(_, start, end)] = spans(make(TICKET), text)
    assert text[start:end] == "JIRA-123"


def test_non_ascii_patterns() -> None:
    text = "Projekt Größe-42 läuft"
    [(_, start, end)] = spans(make({"kind": "PROJECT", "pattern": "Größe-[0-9]+"}), text)
    assert text[start:end] == "Größe-42"


def test_empty_matches_are_skipped() -> None:
    assert spans(make({"kind": "ANY", "pattern": "x*"}), "abxxc") == [("ANY", 2, 4)]


def test_pathological_pattern_is_linear_time() -> None:
    # Catastrophic for a backtracking engine (2**40 paths); instant on RE2.
    detector = make({"kind": "EVIL", "pattern": "(a+)+$"})
    assert detector.detect("a" * 40 + "!", CTX) == []


@pytest.mark.parametrize(
    ("options", "where"),
    [
        pytest.param({"patterns": [{"kind": "ticket", "pattern": "x"}]}, "kind", id="lower-kind"),
        pytest.param({"patterns": [{"kind": "9LIVES", "pattern": "x"}]}, "kind", id="digit-kind"),
        pytest.param({"patterns": [{"kind": "K", "pattern": ""}]}, "pattern", id="empty-pattern"),
        pytest.param({"patterns": [{"pattern": "x"}]}, "kind", id="missing-kind"),
        pytest.param({"patterns": [{"kind": "K", "pattern": "x", "score": 1.5}]}, "score", id="s"),
        pytest.param({"patterns": [{"kind": "K", "pattern": "x", "flags": "i"}]}, "flags", id="f"),
        pytest.param({"patterns": {"kind": "K", "pattern": "x"}}, "patterns", id="not-a-list"),
        pytest.param({"pattern": "x"}, "pattern", id="unknown-option"),
    ],
)
def test_invalid_options(options: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        registry.create("regex", options)
    message = str(info.value)
    assert "invalid options for detector 'regex'" in message
    assert where in message


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("(?=lookahead)", id="lookahead"),
        pytest.param("(?<!x)y", id="lookbehind"),
        pytest.param(r"(a)\1", id="backreference"),
        pytest.param("(unclosed", id="syntax"),
        pytest.param("a{1001}", id="repeat-too-large"),
    ],
)
def test_patterns_re2_cannot_run_are_config_errors(pattern: str) -> None:
    rules = [{"kind": "OK", "pattern": "fine"}, {"kind": "BAD", "pattern": pattern}]
    with pytest.raises(ConfigError) as info:
        registry.create("regex", {"patterns": rules})
    assert "regex" in str(info.value)
    assert "patterns[1]" in str(info.value)  # points at the offending rule
