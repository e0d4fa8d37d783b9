"""Invisible and direction-changing characters: the carrier of "ASCII
smuggling" (Unicode tag characters that models read but humans cannot see),
zero-width payload splitting and Trojan-Source style bidi reordering."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mantlet.core.invisible import BIDI, TAGS, ZERO_WIDTH
from mantlet.core.registry import register
from mantlet.core.types import Finding, ScanContext, Side
from mantlet.detectors._options import parse_options

# (kind, score, character class). A single character class repeated with `+`
# cannot backtrack, so Python's `re` stays linear here.
_CLASSES: tuple[tuple[str, float, str], ...] = (
    ("TAG_CHARACTERS", 1.0, TAGS),
    ("BIDI_CONTROL", 0.8, BIDI),
    ("ZERO_WIDTH", 0.6, ZERO_WIDTH),
)


# Past this many separate runs, a text is reported as one region per kind.
_MAX_RUNS = 4096


def _is_emoji(char: str) -> bool:
    code = ord(char)
    return code >= 0x1F000 or 0x2600 <= code <= 0x27BF or char == "\ufe0f"


def _joins_emoji(text: str, start: int, end: int) -> bool:
    """A lone zero-width joiner between two emoji builds one glyph (family,
    profession and flag sequences); stripping it would break the emoji."""
    return (
        text[start:end] == "\u200d"
        and start > 0
        and end < len(text)
        and _is_emoji(text[start - 1])
        and _is_emoji(text[end])
    )


class InvisibleTextOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_bom_at_start: bool = Field(
        True, description="A byte-order mark opening a text is benign."
    )


class InvisibleTextDetector:
    name = "invisible_text"
    sides = Side.BOTH
    light = True  # linear-time pass, no model
    reads_original = True  # it reports them, so it sees them

    def __init__(self, options: InvisibleTextOptions) -> None:
        self._options = options
        self._pattern = re.compile("|".join(f"(?P<{k}>[{cls}]+)" for k, _, cls in _CLASSES))
        self._scores = {kind: score for kind, score, _ in _CLASSES}
        self._each = {kind: re.compile(f"[{cls}]") for kind, _, cls in _CLASSES}

    def detect(self, text: str, context: ScanContext) -> list[Finding]:
        findings: list[Finding] = []
        for match in self._pattern.finditer(text):
            if len(findings) == _MAX_RUNS:
                return self._flood(text)
            kind = match.lastgroup or "ZERO_WIDTH"
            start, end = match.span()
            if self._options.allow_bom_at_start and start == 0 and match.group() == "\ufeff":
                continue
            if _joins_emoji(text, start, end):
                continue
            findings.append(
                Finding(
                    detector=self.name,
                    kind=kind,
                    start=start,
                    end=end,
                    score=self._scores[kind],
                    detail=f"{end - start} invisible character(s)",
                )
            )
        return findings

    def _flood(self, text: str) -> list[Finding]:
        """One finding per kind, from its first to its last character: a text
        with this many separate runs is an attack, not prose, and a finding
        per run would take seconds to report (the request would time out and
        fail closed anyway). Removing the span removes the text in between."""
        found = []
        reversed_text = text[::-1]  # the classes are single code points
        for kind, score, _ in _CLASSES:
            first = self._each[kind].search(text)
            if first is None:
                continue
            last = self._each[kind].search(reversed_text)
            end = len(text) - (last.start() if last else 0)
            detail = f"more than {_MAX_RUNS} invisible runs, taken as one region"
            found.append(Finding(self.name, kind, first.start(), end, score, detail=detail))
        return found


@register("invisible_text")
def _factory(options: Mapping[str, Any]) -> InvisibleTextDetector:
    return InvisibleTextDetector(parse_options(InvisibleTextOptions, options, "invisible_text"))
