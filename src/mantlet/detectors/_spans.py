"""Resolving overlapping findings of one detector to the strongest per region."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from mantlet.core.types import Finding


def strongest_per_region(findings: Iterable[Finding]) -> list[Finding]:
    """Greedy by score, then length: kept spans never overlap, so their starts
    and ends sort alike and one bisection finds the only neighbours that
    could collide. Returned in text order."""
    starts: list[int] = []
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start)):
        i = bisect.bisect_left(starts, finding.start)
        if i < len(kept) and kept[i].start < finding.end:
            continue
        if i > 0 and kept[i - 1].end > finding.start:
            continue
        starts.insert(i, finding.start)
        kept.insert(i, finding)
    return kept
