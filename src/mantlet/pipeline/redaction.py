"""Applying redactions: overlapping findings are merged into one region, and
each distinct redacted value gets a stable placeholder (``<KIND_n>``) for the
whole check, so the same secret in two messages reads the same."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mantlet.core.types import Action, Finding
from mantlet.policy.model import Redaction

_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_[0-9]+>")


@dataclass(frozen=True, slots=True)
class Region:
    start: int
    end: int
    kind: str
    style: Redaction


@dataclass(frozen=True, slots=True)
class RedactionCandidate:
    finding: Finding
    action: Action
    style: Redaction


def merge_regions(candidates: Sequence[RedactionCandidate]) -> list[Region]:
    """Union of overlapping spans; the region is named after its strongest
    finding (most severe action, then highest score, then longest)."""
    ordered = sorted(candidates, key=lambda c: (c.finding.start, -c.finding.end))
    regions: list[Region] = []
    group: list[RedactionCandidate] = []
    group_end = -1

    def flush() -> None:
        if group:
            lead = max(
                group,
                key=lambda c: (c.action.severity, c.finding.score, c.finding.end - c.finding.start),
            )
            regions.append(Region(group[0].finding.start, group_end, lead.finding.kind, lead.style))

    for cand in ordered:
        if group and cand.finding.start < group_end:
            group.append(cand)
            group_end = max(group_end, cand.finding.end)
        else:
            flush()
            group = [cand]
            group_end = cand.finding.end
    flush()
    return regions


class PlaceholderBook:
    """Numbers distinct values per kind; lives for one check only, so no
    mapping from placeholder back to value outlives the request.

    ``taken`` are placeholder-shaped strings the texts already hold (a
    pseudonymization surrogate, or a user who typed one): a new placeholder
    never reuses one, or two values would read the same, and restoring a
    conversation's surrogates would put one person's value where another's
    was redacted."""

    def __init__(self, taken: set[str] | frozenset[str] = frozenset()) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self._taken = taken

    @classmethod
    def for_texts(cls, texts: Iterable[str]) -> PlaceholderBook:
        return cls(
            {m.group() for text in texts if "<" in text for m in _PLACEHOLDER.finditer(text)}
        )

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self._by_value:
            while True:
                self._counts[kind] = self._counts.get(kind, 0) + 1
                candidate = f"<{kind}_{self._counts[kind]}>"
                if candidate not in self._taken:
                    break
            self._by_value[key] = candidate
        return self._by_value[key]


def apply_regions(text: str, regions: Sequence[Region], book: PlaceholderBook) -> str:
    pieces: list[str] = []
    cursor = 0
    for region in regions:
        pieces.append(text[cursor : region.start])
        value = text[region.start : region.end]
        if region.style is Redaction.PLACEHOLDER:
            pieces.append(book.placeholder(region.kind, value))
        elif region.style is Redaction.MASK:
            pieces.append("*" * len(value))
        cursor = region.end
    pieces.append(text[cursor:])
    return "".join(pieces)
