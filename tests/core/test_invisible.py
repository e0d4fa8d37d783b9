from __future__ import annotations

import random

import pytest

from mantlet.core.invisible import INVISIBLE_RUN, visible

ZWSP, SHY, TAG_A, RLO = "\u200b", "\u00ad", "\U000e0041", "\u202e"


def test_text_without_invisible_characters_has_no_view() -> None:
    assert visible("plain text, even with emoji \U0001f600 and accents é") is None
    assert visible("") is None


def test_view_removes_runs_and_maps_offsets_back() -> None:
    text = f"{ZWSP}ab{SHY}{TAG_A}cd{RLO}"
    view = visible(text)
    assert view is not None
    assert view.text == "abcd"
    assert [view.original(i) for i in range(5)] == [1, 2, 5, 6, 8]
    assert view.original_span(0, 4) == (1, 7)  # a finding over all of it keeps the inner run
    assert view.original_span(2, 3) == (5, 6)
    assert view.original_span(4, 4) == (8, 8)


@pytest.mark.parametrize("seed", range(20))
def test_every_visible_character_maps_to_itself(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "abc 123-@." + ZWSP + SHY + TAG_A + RLO + "\u2066\ufeff\u034f\u061c"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
    view = visible(text)
    if view is None:
        assert not INVISIBLE_RUN.search(text)
        return
    assert view.text == INVISIBLE_RUN.sub("", text)
    for index, char in enumerate(view.text):
        assert text[view.original(index)] == char
    for start in range(len(view.text)):
        for end in range(start + 1, len(view.text) + 1):
            lo, hi = view.original_span(start, end)
            assert INVISIBLE_RUN.sub("", text[lo:hi]) == view.text[start:end]
