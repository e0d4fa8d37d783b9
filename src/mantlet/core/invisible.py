"""Characters that render as nothing: zero-width and other format characters,
bidi controls and Unicode tag characters.

One definition serves the detector that reports them, the injection
normalizer that reads past them, and the pipeline, which gives the other
detectors the text with them removed: a secret split by zero-width spaces is
still the secret once they are stripped, which is what the upstream receives
when the policy removes them.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

# Soft hyphen, combining grapheme joiner, Arabic letter mark, Mongolian vowel
# separator, zero-width space/joiners/marks, invisible operators, BOM.
ZERO_WIDTH = "\u00ad\u034f\u061c\u180e\u200b-\u200f\u2060-\u2064\ufeff"
BIDI = "\u202a-\u202e\u2066-\u2069"
TAGS = "\U000e0000-\U000e007f"
# One character class repeated: cannot backtrack, linear with Python's re.
INVISIBLE_RUN = re.compile(f"[{ZERO_WIDTH}{BIDI}{TAGS}]+")


@dataclass(frozen=True, slots=True)
class VisibleText:
    """A text with its invisible characters removed, and the way back to the
    original's offsets (kept per removed run, not per character)."""

    text: str
    original_length: int
    run_starts: tuple[int, ...]  # where each removed run was, in ``text``
    removed_before: tuple[int, ...]  # characters removed up to and including that run

    def original(self, index: int) -> int:
        """The original offset of ``text[index]`` (of the end, for len(text))."""
        k = bisect.bisect_right(self.run_starts, index) - 1
        return index + (self.removed_before[k] if k >= 0 else 0)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original span covering ``text[start:end]``, with whatever
        invisible characters lie inside it."""
        if start >= end:
            position = self.original(start)
            return position, position
        return self.original(start), self.original(end - 1) + 1


def visible(text: str) -> VisibleText | None:
    """``text`` without its invisible characters; None when it has none."""
    runs = [match.span() for match in INVISIBLE_RUN.finditer(text)]
    if not runs:
        return None
    starts, removed, total = [], [], 0
    for start, end in runs:
        starts.append(start - total)
        total += end - start
        removed.append(total)
    return VisibleText(INVISIBLE_RUN.sub("", text), len(text), tuple(starts), tuple(removed))
