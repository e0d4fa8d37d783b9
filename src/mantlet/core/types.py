"""Core value types shared by every layer.

Kept free of heavy imports: detectors, the pipeline, the gateway and the CLI all
import this module, so it must stay cheap to load.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class Side(enum.StrEnum):
    """Which direction of traffic a detector or a check applies to."""

    INPUT = "input"
    OUTPUT = "output"
    BOTH = "both"

    def covers(self, side: Side) -> bool:
        return self is Side.BOTH or self is side


class Action(enum.StrEnum):
    """What the pipeline does about a finding; ordered by severity."""

    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def most_severe(cls, actions: list[Action] | tuple[Action, ...]) -> Action:
        return max(actions, key=lambda a: a.severity, default=cls.ALLOW)


_SEVERITY = {Action.ALLOW: 0, Action.FLAG: 1, Action.REDACT: 2, Action.BLOCK: 3}


class PartKind(enum.StrEnum):
    """Where a piece of text came from; detectors may treat kinds differently
    (an instruction inside a retrieved document is more suspicious than the
    same sentence typed by the user)."""

    SYSTEM = "system"
    PROMPT = "prompt"
    COMPLETION = "completion"
    TOOL_CALL = "tool_call"
    TOOL_OUTPUT = "tool_output"
    # Tool and function declarations (names, descriptions, parameter schemas):
    # often copied from third-party servers, and read by the model as text.
    TOOL_DEFINITION = "tool_definition"
    DOCUMENT = "document"
    # An image, audio or file item: no text for detectors, but the policy's
    # ``media`` action applies and the verdict records it.
    MEDIA = "media"


@dataclass(frozen=True, slots=True)
class ScanContext:
    """What a detector may know about the text besides the text itself."""

    side: Side = Side.INPUT
    part: PartKind = PartKind.PROMPT
    role: str | None = None
    tenant: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finding:
    """One detection: offsets into the scanned text, never the matched value,
    so findings can be logged and audited without leaking what they found."""

    detector: str
    kind: str
    start: int
    end: int
    score: float
    detail: str = ""
    location: str | None = None
    action: Action | None = None  # set by the pipeline from the policy, never by detectors

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"invalid span {self.start}..{self.end}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score {self.score} outside 0..1")

    def overlaps(self, other: Finding) -> bool:
        return self.start < other.end and other.start < self.end

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
            "detail": self.detail,
            "location": self.location,
            "action": self.action.value if self.action else None,
        }


@runtime_checkable
class Detector(Protocol):
    """The one interface every detector implements.

    ``detect`` is synchronous and must be thread-safe: the pipeline runs
    detectors concurrently in worker threads, each under its own timeout.
    A detector may also set ``light = True`` when it is a linear-time pass
    with no model (regexes, checksums): on short texts the pipeline then runs
    it on the caller's thread, since a thread hop would cost more than the
    scan itself.

    The pipeline hands a detector the text folded as a model reads it
    (``mantlet.core.folding``: invisible characters removed, fullwidth and
    other compatibility forms NFKC-folded) and maps its findings back; a
    detector that must see the original (the one reporting invisible
    characters) sets ``reads_original = True``.
    """

    name: str
    sides: Side

    def detect(self, text: str, context: ScanContext) -> list[Finding]: ...


@runtime_checkable
class LayeredDetector(Detector, Protocol):
    """A detector with a slow layer (a model) that only raises the score of
    ``slow_kinds``. When the policy merely flags those kinds, the gateway runs
    ``without_slow_layer()`` before the upstream call and the whole detector
    alongside it: the answer cannot depend on a flag, so the model need not
    hold the request up. The copy must report every other kind exactly as the
    whole detector does.
    """

    slow_kinds: frozenset[str]

    def without_slow_layer(self) -> Detector: ...


class RunStatus(enum.StrEnum):
    """What happened to one detector during one check; the audit trail relies
    on this being truthful."""

    OK = "ok"
    SKIPPED = "skipped"
    ERROR = "error"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class DetectorReport:
    detector: str
    status: RunStatus
    duration_ms: float = 0.0
    findings: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "status": self.status.value,
            "duration_ms": round(self.duration_ms, 3),
            "findings": self.findings,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The single result of checking one request or response.

    ``sanitized_text`` is set when plain text was checked, ``sanitized_messages``
    and ``sanitized_documents`` when a message list was, ``sanitized_fields``
    when other request fields (tools, response format, ...) came with it; they
    carry the redactions. Nothing here contains a detected value.
    """

    action: Action
    side: Side
    findings: tuple[Finding, ...] = ()
    reports: tuple[DetectorReport, ...] = ()
    sanitized_text: str | None = None
    sanitized_messages: list[dict[str, Any]] | None = None
    sanitized_documents: list[str] | None = None
    sanitized_fields: dict[str, Any] | None = None
    duration_ms: float = 0.0

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    @property
    def timings_ms(self) -> dict[str, float]:
        return {
            r.detector: r.duration_ms for r in self.reports if r.status is not RunStatus.SKIPPED
        }

    @property
    def errors(self) -> dict[str, str]:
        return {
            r.detector: r.reason
            for r in self.reports
            if r.status in (RunStatus.ERROR, RunStatus.TIMEOUT)
        }

    def detectors_with(self, status: RunStatus) -> list[str]:
        return [r.detector for r in self.reports if r.status is status]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action.value,
            "side": self.side.value,
            "findings": [f.to_dict() for f in self.findings],
            "detectors": [r.to_dict() for r in self.reports],
            "ran": self.detectors_with(RunStatus.OK),
            "skipped": self.detectors_with(RunStatus.SKIPPED),
            "errored": sorted(self.errors),
            "duration_ms": round(self.duration_ms, 3),
        }
        if self.sanitized_text is not None:
            out["sanitized_text"] = self.sanitized_text
        if self.sanitized_messages is not None:
            out["sanitized_messages"] = self.sanitized_messages
        if self.sanitized_documents is not None:
            out["sanitized_documents"] = self.sanitized_documents
        if self.sanitized_fields is not None:
            out["sanitized_fields"] = self.sanitized_fields
        return out
