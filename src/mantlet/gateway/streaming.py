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

``StreamRelay`` turns the upstream's chunks into the client's events, with
one guard per choice and text field (content, and a reasoning trace or a
refusal where the upstream sends one).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mantlet.core.types import Action, Verdict
from mantlet.errors import MantletError
from mantlet.privacy import StreamRestorer

__all__ = ["StreamBlocked", "StreamGuard", "StreamRelay"]

Check = Callable[[str], Awaitable[Verdict]]

_OPENERS = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}-----")
_CLOSER = "-----END "
# Delta fields besides content that carry text for the caller (reasoning
# models' traces, refusals): each gets a guard of its own, since a trace can
# leak a secret as well as an answer can. Other delta fields are not relayed.
TEXT_DELTA_FIELDS = ("reasoning_content", "reasoning", "refusal")


class MalformedChunk(MantletError):
    """An upstream stream event that does not have the shape OpenAI's
    streams have: the upstream's fault, answered like any upstream failure."""


# More choices or tool calls than this in one answer is not a real stream.
_MAX_INDEX = 1024


def _choices(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    choices = chunk.get("choices")
    if choices is None:
        return []
    if not isinstance(choices, list):
        raise MalformedChunk("a stream event's choices are not a list")
    return [c for c in choices if isinstance(c, dict)]


def _index(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_INDEX:
        raise MalformedChunk("a stream event's index is not a small whole number")
    return value


def _delta(choice: dict[str, Any]) -> dict[str, Any] | None:
    delta = choice.get("delta")
    if delta is not None and not isinstance(delta, dict):
        raise MalformedChunk("a stream event's delta is not an object")
    return delta


def _calls(delta: dict[str, Any]) -> list[dict[str, Any]]:
    """A delta's tool-call pieces, each checked: an object whose function
    (if any) is an object with string name and arguments."""
    calls = delta.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise MalformedChunk("a stream event's tool calls are not a list")
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(function, dict | None):
            raise MalformedChunk("a stream event's tool call is not an object")
        if function and any(
            not isinstance(function.get(k), str | None) for k in ("name", "arguments")
        ):
            raise MalformedChunk("a stream event's tool call has a non-string name or arguments")
        if call.get("id") is not None and not isinstance(call.get("id"), str):
            raise MalformedChunk("a stream event's tool call id is not a string")
    return calls


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


class StreamRelay:
    """Turns upstream chunks into guarded client events: content goes
    through one StreamGuard per choice; tool calls are collected and checked
    whole at the end (arguments are only meaningful complete)."""

    def __init__(
        self,
        model: str,
        check: Callable[[str], Awaitable[Verdict]],
        holdback: int,
        restorer: Callable[[], StreamRestorer] | None = None,
    ) -> None:
        self.model = model
        self._check = check
        self._holdback = holdback
        # Pseudonymized conversations: surrogates in released text become the
        # caller's real values again (a surrogate split across events too).
        self._restorer = restorer
        # Keyed by (choice index, delta field); "content" is the answer itself.
        self.restorers: dict[tuple[int, str], StreamRestorer] = {}
        self.sent: dict[tuple[int, str], str] = {}
        self.guards: dict[int, StreamGuard] = {}
        self.field_guards: dict[tuple[int, str], StreamGuard] = {}
        self.tools: dict[int, dict[int, dict[str, Any]]] = {}
        self.finish: dict[int, Any] = {}
        self.base: dict[str, Any] = {}
        self.chat = True
        self.usage: dict[str, int] = {}
        self.usage_event: bytes | None = None
        self.watermark: dict[str, Any] | None = None
        self._tool_verdicts: list[Verdict] = []

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return f"data: {json.dumps({**self.base, 'choices': choices, **extra})}\n\n".encode()

    def _part(self, index: int, text: str, first: bool, name: str = "content") -> dict[str, Any]:
        if not self.chat:
            return {"index": index, "text": text, "finish_reason": None}
        delta: dict[str, Any] = {name: text}
        if first:
            delta["role"] = "assistant"
        return {"index": index, "delta": delta, "finish_reason": None}

    async def run(
        self, first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        async def all_chunks() -> AsyncIterator[dict[str, Any]]:
            yield first
            async for chunk in rest:
                yield chunk

        async for chunk in all_chunks():
            if not self.base:
                self.chat = chunk.get("object") != "text_completion"
                self.base = {k: chunk[k] for k in ("id", "created") if k in chunk}
                self.base["model"] = self.model
                self.base["object"] = "chat.completion.chunk" if self.chat else "text_completion"
            if isinstance(chunk.get("mantlet_watermark"), dict):
                self.watermark = chunk["mantlet_watermark"]
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
                self.usage = {k: v for k, v in usage.items() if isinstance(v, int)}
                self.usage_event = self._event([], usage=self.usage)
            for choice in _choices(chunk):
                index = _index(choice.get("index"))
                new = index not in self.guards
                guard = self.guards.setdefault(
                    index, StreamGuard(self._check, holdback=self._holdback)
                )
                if isinstance(choice.get("finish_reason"), str) and choice["finish_reason"]:
                    self.finish[index] = choice["finish_reason"]
                delta = _delta(choice) if self.chat else None
                text = choice.get("text") if not self.chat else (delta or {}).get("content")
                for call in _calls(delta or {}):
                    self._collect_tool_call(index, call)
                if new and self.chat:
                    yield self._event([self._part(index, "", True)])
                for name in TEXT_DELTA_FIELDS:
                    value = (delta or {}).get(name)
                    if isinstance(value, str) and value:
                        side = self.field_guards.setdefault(
                            (index, name), StreamGuard(self._check, holdback=self._holdback)
                        )
                        released = self._restore((index, name), await side.feed(value))
                        if released:
                            yield self._event([self._part(index, released, False, name)])
                if isinstance(text, str) and text:
                    released = self._restore((index, "content"), await guard.feed(text))
                    if released:
                        yield self._event([self._part(index, released, False)])
        for index, guard in sorted(self.guards.items()):
            for (owner, name), side in sorted(self.field_guards.items()):
                if owner == index:
                    released = self._restore((index, name), await side.finish(), final=True)
                    if released:
                        yield self._event([self._part(index, released, False, name)])
            released = self._restore((index, "content"), await guard.finish(), final=True)
            if released:
                yield self._event([self._part(index, released, False)])
            calls = self._tool_calls(index)
            if calls:
                calls = await self._checked_calls(calls)
                if self._restorer is not None:  # after the check, for the caller only
                    restorer = self._restorer()
                    for call in calls:
                        args = call["function"]["arguments"]
                        call["function"]["arguments"] = restorer.restore_json_strings(args)
                self.tools[index] = dict(enumerate(calls))  # what the caller got, for the audit
                tool_delta = {"tool_calls": [{**c, "index": i} for i, c in enumerate(calls)]}
                part = {"index": index, "delta": tool_delta, "finish_reason": None}
                yield self._event([part])

    async def _checked_calls(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A choice's tool calls, checked whole (arguments only mean something
        complete) and redacted where the policy says so. A redaction that does
        not leave well-formed calls ends the stream instead (fail closed)."""
        checked = json.dumps(calls)
        verdict = await self._check(checked)
        self._tool_verdicts.append(verdict)
        if verdict.blocked:
            raise StreamBlocked("tool call blocked by policy", verdict)
        sanitized = verdict.sanitized_text
        if sanitized is None or sanitized == checked:
            return calls
        try:
            redacted = json.loads(sanitized)
        except ValueError:
            redacted = None
        shaped = isinstance(redacted, list) and len(redacted) == len(calls)
        if not shaped or any(
            not isinstance(new, dict) or new.get("id") != old.get("id")
            for new, old in zip(redacted or [], calls, strict=False)
        ):
            raise StreamBlocked("tool call arguments could not be redacted and kept well-formed")
        return list(redacted)

    def _restore(self, key: tuple[int, str], text: str, *, final: bool = False) -> str:
        if self._restorer is not None:
            restorer = self.restorers.setdefault(key, self._restorer())
            text = restorer.feed(text) if text else ""
            if final:
                text += restorer.flush()
        self.sent[key] = self.sent.get(key, "") + text
        return text

    def _collect_tool_call(self, index: int, call: dict[str, Any]) -> None:
        slot = self.tools.setdefault(index, {}).setdefault(
            _index(call.get("index")), {"type": "function", "function": {"arguments": ""}}
        )
        if call.get("id"):
            slot["id"] = call["id"]
        function = call.get("function") or {}
        if function.get("name"):
            slot["function"]["name"] = function["name"]
        slot["function"]["arguments"] += function.get("arguments") or ""

    def _tool_calls(self, index: int) -> list[dict[str, Any]]:
        return [call for _, call in sorted(self.tools.get(index, {}).items())]

    def closing_event(self, audit_index: int | None, manifest: str | None) -> bytes:
        """The last chunk of each choice (finish_reason); the manifest and the
        audit index ride on it as extra fields the SDK keeps."""
        parts = []
        for index in sorted(self.guards):
            reason = self.finish.get(index, "stop")
            part: dict[str, Any] = {"index": index, "finish_reason": reason}
            if self.chat:
                part["delta"] = {}
            else:
                part["text"] = ""
            parts.append(part)
        extra: dict[str, Any] = {"mantlet_audit_index": audit_index}
        if self.watermark:
            extra["mantlet_watermark"] = self.watermark
        if manifest:
            extra["mantlet_provenance"] = manifest
        return self._event(parts, **extra)

    def reasoning(self) -> list[str | None]:
        """The reasoning trace each choice's caller received, if any."""
        traces = []
        for index in sorted(self.guards):
            sent = [self.sent.get((index, name)) for name in ("reasoning_content", "reasoning")]
            traces.append("".join(t for t in sent if t) or None)
        return traces

    def tool_calls(self) -> list[list[dict[str, Any]]]:
        """The tool calls each choice's caller received."""
        return [self._tool_calls(index) for index in sorted(self.guards)]

    def texts(self) -> list[str]:
        """The text each choice's caller received."""
        return [self.sent.get((index, "content"), "") for index in sorted(self.guards)]

    def verdicts(self) -> list[Verdict]:
        guards = [g for _, g in sorted(self.guards.items())]
        guards += [g for _, g in sorted(self.field_guards.items())]
        return [g.last_verdict for g in guards if g.last_verdict] + self._tool_verdicts

    def answer(self) -> dict[str, Any]:
        """What the caller received, as one object (for the audit digest)."""
        tools = {str(i): self._tool_calls(i) for i in self.tools}
        fields = {
            f"{i}.{name}": t for (i, name), t in sorted(self.sent.items()) if name != "content"
        }
        answer = {**self.base, "choices": self.texts(), "tool_calls": tools}
        return {**answer, "fields": fields} if fields else answer
