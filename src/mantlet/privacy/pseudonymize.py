"""Reversible pseudonymization: replace detected PII with per-conversation
surrogates kept in the vault, and restore them in the model's answer — whole,
or chunk by chunk while it streams."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import re2

from mantlet.core.folding import fold, seen_text, unfold
from mantlet.core.types import Finding, ScanContext
from mantlet.detectors._spans import strongest_per_region
from mantlet.detectors.pii import PiiDetector
from mantlet.pipeline.parts import message_parts, rebuild_messages
from mantlet.privacy.surrogates import SurrogateStyle, fake_value, placeholder
from mantlet.privacy.vault import Vault

_MAX_ATTEMPTS = 50


class Pseudonymizer:
    """Thread-safe as long as the detector and the vault are (both are)."""

    def __init__(
        self,
        detector: PiiDetector,
        vault: Vault,
        *,
        style: SurrogateStyle = SurrogateStyle.PLACEHOLDER,
        threshold: float = 0.5,
        fake_key: bytes = b"",
    ) -> None:
        self.detector = detector
        self.vault = vault
        self.style = style
        self.threshold = threshold
        self._fake_key = fake_key
        # Numbering reads then writes the vault: serialized (here across
        # threads, by the vault's transaction across processes), so two
        # concurrent requests of one conversation never give two values one
        # surrogate.
        self._lock = threading.Lock()

    # -- forward -------------------------------------------------------------

    def findings(self, text: str, tenant: str | None = None) -> list[Finding]:
        # The tenant scopes the detector's caches (a hit must not be timeable
        # by another tenant).
        folded = fold(text)  # as the shield sees it: a fullwidth card is a card
        found = self.detector.detect(seen_text(text, folded), ScanContext(tenant=tenant))
        kept = (f for f in unfold(found, folded) if f.score >= self.threshold)
        return strongest_per_region(kept)

    def pseudonymize(
        self,
        text: str,
        conversation: str,
        *,
        context: str | None = None,
        tenant: str | None = None,
    ) -> str:
        """``context``: all text the surrogates must not collide with (e.g. every
        message of the request); defaults to ``text``."""
        pieces: list[str] = []
        cursor = 0
        for finding in self.findings(text, tenant):
            pieces.append(text[cursor : finding.start])
            value = text[finding.start : finding.end]
            pieces.append(self.surrogate(conversation, finding.kind, value, context or text))
            cursor = finding.end
        pieces.append(text[cursor:])
        return "".join(pieces)

    def pseudonymize_messages(
        self, messages: Sequence[Mapping[str, Any]], conversation: str, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Every text a message carries, as the guard reads it: content and
        its text items, tool-call arguments, names, refusals, reasoning. A
        value left out here would be redacted by the guard instead, and not
        come back in the answer."""
        parts = [p for p in message_parts(messages) if p.text]
        everything = "\n".join(p.text for p in parts)
        replacements = {}
        for part in parts:
            done = self.pseudonymize(part.text, conversation, context=everything, tenant=tenant)
            if done != part.text:
                replacements[part.path] = done
        return rebuild_messages(messages, replacements)

    def surrogate(self, conversation: str, kind: str, value: str, context: str) -> str:
        with self._lock, self.vault.allocating():
            return self._surrogate(conversation, kind, value, context)

    def _surrogate(self, conversation: str, kind: str, value: str, context: str) -> str:
        known = self.vault.surrogate_for(conversation, kind, value)
        if known is not None:
            return known
        taken = set(self.vault.mapping(conversation))
        number = self.vault.count(conversation, kind)
        for attempt in range(_MAX_ATTEMPTS):
            if self.style is SurrogateStyle.FAKE:
                candidate = fake_value(kind, value, self._fake_key, attempt)
            else:
                candidate = placeholder(kind, number + 1 + attempt)
            # Never equal to, or inside, real text: restoring would then
            # rewrite a value the user actually wrote.
            if candidate not in taken and candidate not in context and candidate != value:
                self.vault.put(conversation, kind, value, candidate)
                return candidate
        candidate = placeholder(kind, number + 1 + _MAX_ATTEMPTS)
        while candidate in taken or candidate in context:
            number += 1
            candidate = placeholder(kind, number + 1 + _MAX_ATTEMPTS)
        self.vault.put(conversation, kind, value, candidate)
        return candidate

    # -- backward ------------------------------------------------------------

    def restore(self, text: str, conversation: str) -> str:
        return Restorer(self.vault.mapping(conversation)).restore(text)

    def stream_restorer(self, conversation: str) -> StreamRestorer:
        return StreamRestorer(self.vault.mapping(conversation))


class Restorer:
    """Replaces every surrogate by its real value in one RE2 pass (longest
    surrogate first where two share a prefix)."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)
        ordered = sorted(self.mapping, key=len, reverse=True)
        self._regex = re2.compile("|".join(re2.escape(s) for s in ordered)) if ordered else None

    def restore(self, text: str) -> str:
        if self._regex is None:
            return text
        return str(self._regex.sub(lambda m: self.mapping[m.group(0)], text))

    def restore_json_strings(self, text: str) -> str:
        """The same, for surrogates inside JSON string literals (tool-call
        arguments): each real value goes in JSON-escaped, so a quote or a
        backslash in it cannot end the string and change the arguments."""
        if self._regex is None:
            return text
        escaped = {k: json.dumps(v)[1:-1] for k, v in self.mapping.items()}
        return str(self._regex.sub(lambda m: escaped[m.group(0)], text))


class StreamRestorer:
    """Restores surrogates in a streamed answer: ``feed`` each chunk and send
    what it returns; ``flush`` at the end. A chunk that ends with what could
    be the start of a surrogate keeps that tail back until the next chunk
    shows whether it is one, so a surrogate split across chunks is restored."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._restorer = Restorer(mapping)
        self.restore_json_strings = self._restorer.restore_json_strings  # whole tool calls
        self._prefixes = {s[:i] for s in mapping for i in range(1, len(s))}
        self._longest = max((len(s) for s in mapping), default=0)
        self._buffer = ""

    def feed(self, chunk: str) -> str:
        text = self._restorer.restore(self._buffer + chunk)
        hold = 0
        for size in range(min(self._longest - 1, len(text)), 0, -1):
            if text[-size:] in self._prefixes:
                hold = size
                break
        self._buffer = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        rest, self._buffer = self._buffer, ""
        return rest

    def restore_stream(self, chunks: Iterable[str]) -> Iterator[str]:
        for chunk in chunks:
            out = self.feed(chunk)
            if out:
                yield out
        rest = self.flush()
        if rest:
            yield rest
