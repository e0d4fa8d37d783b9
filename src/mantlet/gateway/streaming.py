"""Guarded streaming: the answer is scanned as it grows and only text that can
no longer change its verdict is released.

Why a hold-back window: a secret split across upstream chunks is invisible to
a detector until its last character arrives. The guard therefore keeps the
last ``holdback`` characters (and anything from an unclosed ``-----BEGIN``
block, whose secret can be far longer) unreleased, scans the whole answer so
far, and moves the release point back to the start of any finding that
crosses it. Released text is the sanitized (redacted) form, with the same
placeholders a non-streamed answer would get. A block verdict, or a
sanitized prefix that no longer matches what was already sent, ends the
stream with an error event (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mantlet.core.types import Action, Verdict
from mantlet.errors import MantletError

__all__ = ["StreamBlocked", "StreamGuard"]

Check = Callable[[str], Awaitable[Verdict]]

_OPENERS = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}-----")
_CLOSER = "-----END "


class StreamBlocked(MantletError):
    """The answer may not continue; ``verdict`` says why (None: the guard
    could not keep released text consistent)."""

    def __init__(self, message: str, verdict: Verdict | None = None) -> None:
        super().__init__(message)
        self.verdict = verdict


@dataclass
class StreamGuard:
    check: Check
    holdback: int = 256
    step: int = 64
    raw: str = ""
    released_raw: int = 0
    released: str = ""
    scanned_at: int = 0
    verdicts: list[Verdict] = field(default_factory=list)

    async def feed(self, delta: str) -> str:
        """Adds upstream text; returns sanitized text that is safe to send now."""
        self.raw += delta
        if len(self.raw) - self.scanned_at < self.step:
            return ""
        return await self._release(final=False)

    async def finish(self) -> str:
        """The upstream is done: scans everything and releases the rest."""
        return await self._release(final=True)

    @property
    def last_verdict(self) -> Verdict | None:
        return self.verdicts[-1] if self.verdicts else None

    async def _release(self, *, final: bool) -> str:
        self.scanned_at = len(self.raw)
        verdict = await self.check(self.raw)
        self.verdicts[-1:] = [verdict]  # keep only the latest full-text verdict
        if verdict.blocked:
            raise StreamBlocked("answer blocked by policy", verdict)
        cut = len(self.raw) if final else self._safe_cut(verdict)
        if cut <= self.released_raw:
            return ""
        sanitized = await self._sanitized_prefix(cut, verdict)
        if not sanitized.startswith(self.released):
            raise StreamBlocked("already released text would change after redaction")
        new = sanitized[len(self.released) :]
        self.released, self.released_raw = sanitized, cut
        return new

    def _safe_cut(self, verdict: Verdict) -> int:
        cut = max(0, len(self.raw) - self.holdback)
        opener = _unclosed_block(self.raw)
        if opener is not None:
            cut = min(cut, opener)
        # Never cut through something the policy would redact or block.
        moved = True
        while moved:
            moved = False
            for finding in verdict.findings:
                severe = finding.action in (Action.REDACT, Action.BLOCK)
                if severe and finding.start < cut < finding.end:
                    cut, moved = finding.start, True
        return cut

    async def _sanitized_prefix(self, cut: int, verdict: Verdict) -> str:
        if cut == len(self.raw):
            return verdict.sanitized_text if verdict.sanitized_text is not None else self.raw
        prefix = self.raw[:cut]
        touched = any(f.start < cut and f.action is Action.REDACT for f in verdict.findings)
        if not touched:
            return prefix
        prefix_verdict = await self.check(prefix)
        if prefix_verdict.blocked:
            raise StreamBlocked("answer blocked by policy", prefix_verdict)
        return (
            prefix_verdict.sanitized_text if prefix_verdict.sanitized_text is not None else prefix
        )


def _unclosed_block(text: str) -> int | None:
    """Start of the last ``-----BEGIN ...-----`` with no ``-----END`` after it."""
    last = None
    for match in _OPENERS.finditer(text):
        last = match
    if last is None or _CLOSER in text[last.end() :]:
        return None
    return last.start()
