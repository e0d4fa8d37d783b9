from __future__ import annotations

import random
import unicodedata

import pytest

from mantlet.core.folding import fold
from mantlet.core.invisible import INVISIBLE_RUN

ZWSP, SHY, TAG_A, RLO = "\u200b", "\u00ad", "\U000e0041", "\u202e"


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize("text", ["", "plain ASCII", "accents é ü and emoji \U0001f600"])
def test_text_a_model_reads_as_written_has_no_folded_view(text: str) -> None:
    assert fold(text) is None


def test_invisible_characters_are_removed_and_offsets_map_back() -> None:
    text = f"{ZWSP}ab{SHY}{TAG_A}cd{RLO}"
    folded = fold(text)
    assert folded is not None
    assert folded.text == "abcd"
    assert list(folded.origin) == [1, 2, 5, 6, 8]
    assert folded.original_span(0, 4) == (1, 7)  # a finding over all of it keeps the inner run
    assert folded.original_span(2, 3) == (5, 6)
    assert folded.original_span(4, 4) == (8, 8)


def test_compatibility_forms_fold_to_what_a_model_reads() -> None:
    text = "card " + fullwidth("4111 1111") + " ﬁle ①"
    folded = fold(text)
    assert folded is not None
    assert folded.text == "card 4111 1111 file 1"
    start = folded.text.index("file")
    assert folded.original_span(start, start + 2) == (15, 16)  # "fi" came from one ligature
    assert text[slice(*folded.original_span(5, 14))] == fullwidth("4111 1111")


def test_folds_that_keep_the_length_keep_every_offset() -> None:
    text = "x" * 1000 + fullwidth("7") + "我们，同意！" + "y" * 1000
    folded = fold(text)
    assert folded is not None
    assert folded.text == "x" * 1000 + "7" + "我们,同意!" + "y" * 1000
    assert folded.origin is None  # one character for one: the offsets are the same
    assert folded.original_span(3, 1500) == (3, 1500)


def test_a_long_text_with_one_expanding_character_keeps_every_offset() -> None:
    text = "x" * 1000 + "ﬁ" + fullwidth("7") + "y" * 1000
    folded = fold(text)
    assert folded is not None and folded.origin is not None
    assert folded.text == "x" * 1000 + "fi7" + "y" * 1000
    assert list(folded.origin) == [*range(1001), 1000, *range(1001, len(text) + 1)]


@pytest.mark.parametrize("seed", range(30))
def test_every_folded_character_comes_from_its_original(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "abc 123-@.４ｊ＠𝟏é，"
    if seed % 3:  # two texts in three also hold characters that fold to several, or none
        alphabet += ZWSP + SHY + TAG_A + RLO + "\u2066\ufeff\u034fﬁ½"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 600)))
    folded = fold(text)
    if folded is None:
        return
    expected = "".join(unicodedata.normalize("NFKC", c) for c in text if not INVISIBLE_RUN.match(c))
    assert folded.text == expected
    for start in range(0, len(folded.text), 7):
        for end in range(start + 1, min(len(folded.text), start + 40) + 1, 5):
            lo, hi = folded.original_span(start, end)
            refolded = "".join(
                unicodedata.normalize("NFKC", c) for c in text[lo:hi] if not INVISIBLE_RUN.match(c)
            )
            assert folded.text[start:end] in refolded
