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
import unicodedata
from array import array
from dataclasses import dataclass
from typing import Protocol, TypeVar

from mantlet.core.invisible import INVISIBLE_RUN

# Texts are checked in blocks this long, so a long document with one odd
# character pays per-character work for that block only.
_BLOCK = 256


@dataclass(frozen=True, slots=True)
class FoldedText:
    """A folded text and, for each of its characters, the original's index."""

    text: str
    origin: array[int]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original span behind ``text[start:end]`` (invisible characters
        inside it included; a character folded into several is covered whole)."""
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
        for offset, char in enumerate(chunk):
            if INVISIBLE_RUN.match(char):
                continue
            folded = char if char.isascii() else unicodedata.normalize("NFKC", char)
            pieces.append(folded)
            origin.extend([block + offset] * len(folded))
    folded_text = "".join(pieces)
    origin.append(len(text))  # where the end of the folded text lies
    return FoldedText(folded_text, origin)


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
