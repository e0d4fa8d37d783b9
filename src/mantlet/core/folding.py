"""The text detectors see: invisible characters removed and compatibility
forms folded (NFKC), with the way back to the original's offsets.

Why: what an LLM reads is not what a regex matches. A card number in
fullwidth digits (４１１１ …), an e-mail in mathematical letters or a key split
by zero-width spaces is read by the model as the plain value, and removing
the invisible characters (what the policy usually does with them) hands the
upstream the value whole. Detectors therefore scan the folded text; their
findings are mapped back and redacted in the original.

NFKC is applied per character: enough for the compatibility forms above, and
it keeps every folded character traceable to one original character.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from array import array
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mantlet.core.invisible import BIDI, INVISIBLE_RUN, TAGS, ZERO_WIDTH

# Texts are checked in blocks this long, so a long document with one odd
# character pays per-character work for that block only.
_BLOCK = 256


@dataclass(frozen=True, slots=True)
class FoldedText:
    """A folded text and, for each of its characters, the original's index
    (``None``: the same index, every fold having kept the length)."""

    text: str
    origin: array[int] | None

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original span behind ``text[start:end]`` (invisible characters
        inside it included; a character folded into several is covered whole)."""
        if self.origin is None:
            return start, end
        if start >= end:
            position = self.origin[start]
            return position, position
        return self.origin[start], self.origin[end - 1] + 1


def fold(text: str) -> FoldedText | None:
    """``text`` as detectors should see it; None when that is ``text`` itself."""
    if text.isascii() or (
        unicodedata.is_normalized("NFKC", text) and not INVISIBLE_RUN.search(text)
    ):
        return None
    changing, expanding, one_to_one = _tables()
    if expanding.search(text) is None:
        # Every change keeps the length (fullwidth punctuation in Chinese or
        # Japanese text, say): a few C-level replaces, offsets unchanged.
        return FoldedText(_replaced(text, one_to_one), None)
    pieces: list[str] = []
    origin: array[int] = array("l")
    for block in range(0, len(text), _BLOCK):
        chunk = text[block : block + _BLOCK]
        if chunk.isascii() or (
            unicodedata.is_normalized("NFKC", chunk) and not INVISIBLE_RUN.search(chunk)
        ):
            pieces.append(chunk)
            origin.extend(range(block, block + len(chunk)))
            continue
        if expanding.search(chunk) is None:
            pieces.append(_replaced(chunk, one_to_one))
            origin.extend(range(block, block + len(chunk)))
            continue
        # Otherwise only the characters that change cost a Python step.
        kept = 0
        for match in changing.finditer(chunk):
            at = match.start()
            pieces.append(chunk[kept:at])
            origin.extend(range(block + kept, block + at))
            char = match.group()
            if not INVISIBLE_RUN.match(char):
                folded = unicodedata.normalize("NFKC", char)
                pieces.append(folded)
                origin.extend([block + at] * len(folded))
            kept = at + 1
        pieces.append(chunk[kept:])
        origin.extend(range(block + kept, block + len(chunk)))
    folded_text = "".join(pieces)
    origin.append(len(text))  # where the end of the folded text lies
    return FoldedText(folded_text, origin)


def _replaced(text: str, one_to_one: dict[str, str]) -> str:
    """``text`` with its one-to-one folds made: one ``str.replace`` per
    distinct character present (a handful), not a lookup per character."""
    for char in set(text).intersection(one_to_one):
        text = text.replace(char, one_to_one[char])
    return text


@functools.cache
def _tables() -> tuple[re.Pattern[str], Any, dict[str, str]]:
    """Every character NFKC changes on its own, plus the invisible ones (one
    class); those of them that do not fold to exactly one character (a
    second class); and the one-to-one folds.
    Built on first use, about 30 ms: the first two planes, since no
    character beyond them has a compatibility form."""
    import re2  # here, not at import: `mantlet.core` stays light

    changing: list[int] = []
    one_to_one: dict[str, str] = {}
    for code in range(0x80, 0x30000):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        folded = unicodedata.normalize("NFKC", char)
        if folded != char:
            changing.append(code)
            if len(folded) == 1:
                one_to_one[char] = folded
    invisible = f"{ZERO_WIDTH}{BIDI}{TAGS}"
    expanding = [code for code in changing if chr(code) not in one_to_one]
    # The second class only answers "any?", over whole texts: RE2's DFA reads
    # a text once, where Python's re tests each character against the class.
    return (
        re.compile(f"[{_class_of(changing)}{invisible}]"),
        re2.compile(f"[{_class_of(expanding)}{invisible}]"),
        one_to_one,
    )


def _class_of(codes: list[int]) -> str:
    """A regex character class body for sorted code points, as ranges."""
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in ranges
    )


def seen_text(text: str, folded: FoldedText | None) -> str:
    """What a detector scans: the folded text when there is one."""
    return text if folded is None else folded.text


class _Spanned(Protocol):
    """A dataclass with a span (a Finding, a decoded variant)."""

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


Spanned = TypeVar("Spanned", bound=_Spanned)


def unfold(spanned: list[Spanned], folded: FoldedText | None) -> list[Spanned]:
    """Findings (or other dataclasses with ``start`` and ``end``) made on
    ``folded.text``, in the original text's offsets."""
    if folded is None:
        return spanned
    out = []
    for item in spanned:
        start, end = folded.original_span(item.start, item.end)
        out.append(dataclasses.replace(item, start=start, end=end))  # type: ignore[type-var]
    return out
