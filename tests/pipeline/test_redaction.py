from __future__ import annotations

import pytest

from mantlet.core.types import Action, Finding
from mantlet.pipeline.redaction import (
    PlaceholderBook,
    RedactionCandidate,
    Region,
    apply_regions,
    merge_regions,
)
from mantlet.policy.model import Redaction

P, M, R = Redaction.PLACEHOLDER, Redaction.MASK, Redaction.REMOVE


def cand(
    start: int,
    end: int,
    kind: str = "K",
    *,
    action: Action = Action.REDACT,
    score: float = 1.0,
    style: Redaction = P,
) -> RedactionCandidate:
    return RedactionCandidate(Finding("d", kind, start, end, score), action, style)


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        pytest.param([], [], id="none"),
        pytest.param([cand(2, 5)], [Region(2, 5, "K", P)], id="single"),
        pytest.param(
            [cand(10, 12, "B"), cand(0, 3, "A")],
            [Region(0, 3, "A", P), Region(10, 12, "B", P)],
            id="disjoint-sorted",
        ),
        pytest.param(
            [cand(0, 5, "A"), cand(5, 8, "B")],
            [Region(0, 5, "A", P), Region(5, 8, "B", P)],
            id="touching-not-merged",
        ),
        pytest.param([cand(0, 5), cand(3, 9)], [Region(0, 9, "K", P)], id="overlap-union"),
        pytest.param([cand(0, 10), cand(2, 4)], [Region(0, 10, "K", P)], id="containment"),
        pytest.param(
            [cand(0, 4), cand(3, 6), cand(5, 9), cand(20, 21)],
            [Region(0, 9, "K", P), Region(20, 21, "K", P)],
            id="chain",
        ),
        pytest.param(
            [cand(4, 9, "LOW", action=Action.REDACT), cand(0, 5, "HIGH", action=Action.BLOCK)],
            [Region(0, 9, "HIGH", P)],
            id="lead-by-severity",
        ),
        pytest.param(
            [cand(0, 5, "A", score=0.6), cand(2, 4, "B", score=0.9)],
            [Region(0, 5, "B", P)],
            id="lead-by-score",
        ),
        pytest.param(
            [cand(0, 3, "SHORT"), cand(1, 9, "LONG")],
            [Region(0, 9, "LONG", P)],
            id="lead-by-length",
        ),
        pytest.param(
            [cand(0, 5, "A", style=M, score=0.5), cand(2, 7, "B", style=R, score=0.9)],
            [Region(0, 7, "B", R)],
            id="style-from-lead",
        ),
    ],
)
def test_merge_regions(candidates: list[RedactionCandidate], expected: list[Region]) -> None:
    assert merge_regions(candidates) == expected


def test_placeholders_are_stable_per_value_and_numbered_per_kind() -> None:
    book = PlaceholderBook()
    assert book.placeholder("EMAIL", "a@x.com") == "<EMAIL_1>"
    assert book.placeholder("EMAIL", "b@x.com") == "<EMAIL_2>"
    assert book.placeholder("EMAIL", "a@x.com") == "<EMAIL_1>"
    assert book.placeholder("TOKEN", "a@x.com") == "<TOKEN_1>"  # counters are per kind
    assert book.placeholder("EMAIL", "A@x.com") == "<EMAIL_3>"  # values compare exactly
    assert PlaceholderBook().placeholder("EMAIL", "b@x.com") == "<EMAIL_1>"  # per book


@pytest.mark.parametrize(
    ("regions", "expected"),
    [
        pytest.param([], "call 555-1234 or 555-9999", id="no-regions"),
        pytest.param([Region(5, 13, "PHONE", P)], "call <PHONE_1> or 555-9999", id="placeholder"),
        pytest.param(
            [Region(5, 13, "PHONE", P), Region(17, 25, "PHONE", P)],
            "call <PHONE_1> or <PHONE_2>",
            id="two-values",
        ),
        pytest.param([Region(5, 13, "PHONE", M)], "call ******** or 555-9999", id="mask"),
        pytest.param([Region(4, 13, "PHONE", R)], "call or 555-9999", id="remove"),
        pytest.param(
            [Region(0, 4, "VERB", R), Region(5, 13, "PHONE", M), Region(17, 25, "PHONE", P)],
            " ******** or <PHONE_1>",
            id="mixed",
        ),
        pytest.param([Region(0, 25, "ALL", P)], "<ALL_1>", id="whole-text"),
    ],
)
def test_apply_regions(regions: list[Region], expected: str) -> None:
    assert apply_regions("call 555-1234 or 555-9999", regions, PlaceholderBook()) == expected


def test_same_value_reads_the_same_across_texts_sharing_a_book() -> None:
    book = PlaceholderBook()
    first = apply_regions("key=abc", [Region(4, 7, "KEY", P)], book)
    second = apply_regions("abc and xyz", [Region(0, 3, "KEY", P), Region(8, 11, "KEY", P)], book)
    assert first == "key=<KEY_1>"
    assert second == "<KEY_1> and <KEY_2>"


def test_mask_keeps_length_for_non_ascii() -> None:
    text = "pw: pässwörd!"
    out = apply_regions(text, [Region(4, 12, "PW", M)], PlaceholderBook())
    assert out == "pw: ********!"
    assert len(out) == len(text)


def test_placeholders_already_in_the_texts_are_never_reused() -> None:
    """A surrogate from pseudonymization (or a user who typed one) keeps its
    meaning: a new value gets the next free number."""
    book = PlaceholderBook.for_texts(["mail <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_3>", "no <tag>"])
    assert book.placeholder("EMAIL_ADDRESS", "bob@example.org") == "<EMAIL_ADDRESS_2>"
    assert book.placeholder("EMAIL_ADDRESS", "carol@example.org") == "<EMAIL_ADDRESS_4>"
    assert book.placeholder("PHONE_NUMBER", "+1 415 555 2671") == "<PHONE_NUMBER_1>"
    assert PlaceholderBook.for_texts([]).placeholder("X", "v") == "<X_1>"
