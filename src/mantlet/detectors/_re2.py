"""Compiling untrusted-input patterns with RE2.

Detectors scan attacker-supplied text, so every pattern they run must be
linear-time; RE2 guarantees it (no backreferences, no lookaround), where
Python's ``re`` can backtrack catastrophically on a crafted input.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import re2

from mantlet.errors import ConfigError


def compile_pattern(pattern: str, *, ignore_case: bool = False, where: str = "pattern") -> Any:
    """Compile ``pattern`` with RE2; a syntax error becomes a ``ConfigError`` naming ``where``."""
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):  # the binding reports RE2's message as bytes
            reason = reason.decode("utf-8", "replace")
        raise ConfigError(f"{where}: not a valid RE2 pattern ({reason})") from None


def search_set(patterns: Sequence[str], *, where: str, max_mem: int | None = None) -> Any:
    """An unanchored RE2 set: one pass over a text tells which of ``patterns``
    match anywhere in it (``Match`` answers their indices, or None for none).
    ``max_mem`` raises RE2's budget for large sets (the DFA holds them all)."""
    options = re2.Options()
    options.log_errors = False
    if max_mem is not None:
        options.max_mem = max_mem
    found = re2.Set.SearchSet(options)
    for index, pattern in enumerate(patterns):
        if found.Add(pattern) != index:
            raise ConfigError(f"{where}[{index}]: rejected by the RE2 set")
    if patterns:  # an empty set is left uncompiled; callers do not match against it
        found.Compile()
    return found


class Subject:
    """A text as RE2 reads it: UTF-8 bytes, encoded once. The binding's
    ``search`` on a ``str`` encodes the whole text and counts characters from
    its start on every call, so resuming a search at an offset would cost the
    text's length each time; on bytes it costs nothing, and byte offsets are
    mapped back to character offsets here (identity on ASCII)."""

    __slots__ = ("_chars", "data", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8")
        self._chars: Any = None

    def chars(self, offset: int) -> int:
        """The character offset of byte ``offset`` (a character boundary)."""
        if len(self.data) == len(self.text):
            return offset
        if self._chars is None:
            import numpy as np

            lead = (np.frombuffer(self.data, dtype=np.uint8) & 0xC0) != 0x80
            self._chars = np.concatenate(([0], np.cumsum(lead)))
        return int(self._chars[offset])


class CharMatch:
    """A match on a ``Subject``'s bytes, with spans in characters."""

    __slots__ = ("_match", "_subject")

    def __init__(self, match: Any, subject: Subject) -> None:
        self._match, self._subject = match, subject

    def span(self, group: int | str = 0) -> tuple[int, int]:
        start, end = self._match.span(group)
        if start < 0:
            return -1, -1
        return self._subject.chars(start), self._subject.chars(end)


def value_matches(regex: Any, subject: Subject, group: int | str) -> Iterator[CharMatch]:
    """Every match whose ``group`` (the value) is not empty. The next search
    starts where the value ends, not where the match does: a pattern's
    boundary character after a value ("10.0.0.1,10.0.0.2", "70651\\n082 490
    1693") is also the boundary before the next one, and ``finditer`` would
    have consumed it (RE2 has no lookaround to leave it in place)."""
    at = 0
    while (match := regex.search(subject.data, at)) is not None:
        start, end = match.span(group)
        if start < 0 or start == end:
            at = max(match.end(), match.start() + 1)
            continue
        yield CharMatch(match, subject)
        at = end
