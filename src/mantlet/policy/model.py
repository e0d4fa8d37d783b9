"""The policy schema. Pydantic validates it and generates its JSON Schema."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mantlet.core.types import Action, Side

WILDCARD_KIND = "*"


class OnError(StrEnum):
    """What a detector error or timeout means for the verdict."""

    BLOCK = "block"
    ALLOW = "allow"


class Redaction(StrEnum):
    """How redacted spans are rewritten in the sanitized text."""

    PLACEHOLDER = "placeholder"  # <KIND_n>, stable per distinct value
    MASK = "mask"  # same length, '*'
    REMOVE = "remove"  # deleted (e.g. invisible characters)


class DetectorPolicy(BaseModel):
    """Settings for one detector; unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    # strict: YAML ``yes``/``true`` must not silently become 1 (a 1 ms timeout).
    enabled: bool = Field(True, strict=True)
    threshold: float = Field(
        0.5, ge=0.0, le=1.0, strict=True, description="Minimum score a finding needs."
    )
    action: Action = Field(Action.BLOCK, description="Action for kinds not listed in `actions`.")
    actions: dict[str, Action] = Field(
        default_factory=dict, description="Action per finding kind; '*' matches any kind."
    )
    on_error: OnError = Field(
        OnError.BLOCK, description="Verdict when the detector errors or times out (fail closed)."
    )
    timeout_ms: int | None = Field(
        None, gt=0, le=600_000, strict=True, description="Overrides the policy-wide timeout."
    )
    sides: Side | None = Field(None, description="Restrict the detector to one side.")
    redaction: Redaction = Redaction.PLACEHOLDER
    options: dict[str, Any] = Field(
        default_factory=dict, description="Detector-specific options, validated by the detector."
    )

    def action_for(self, kind: str) -> Action:
        return self.actions.get(kind, self.actions.get(WILDCARD_KIND, self.action))


class Policy(BaseModel):
    """A named set of detector settings. ``extends`` has been resolved by the
    loader by the time a ``Policy`` exists; it is kept for provenance."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    name: str = "custom"
    description: str = ""
    extends: str | None = Field(
        None, description="A shipped profile name or a path relative to this file."
    )
    timeout_ms: int = Field(
        2000,
        gt=0,
        le=600_000,
        strict=True,
        description="Default per-detector timeout in milliseconds.",
    )
    detectors: dict[str, DetectorPolicy] = Field(default_factory=dict)
    media: Action = Field(
        Action.ALLOW,
        description="Images, audio and files in messages, which no detector reads: allow"
        " (each is still recorded in the verdict as UNSCANNED_MEDIA), flag or block.",
    )

    @field_validator("media")
    @classmethod
    def _media_action(cls, value: Action) -> Action:
        if value is Action.REDACT:
            raise ValueError("media can be allowed, flagged or blocked, not redacted")
        return value

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, value: dict[str, DetectorPolicy]) -> dict[str, DetectorPolicy]:
        from mantlet.core.registry import available

        unknown = sorted(set(value) - set(available()))
        if unknown:
            raise ValueError(
                f"unknown detector(s) {', '.join(unknown)}; available: {', '.join(available())}"
            )
        return value

    def timeout_for(self, detector: str) -> float:
        """Timeout in seconds for one detector."""
        own = self.detectors[detector].timeout_ms
        return (own if own is not None else self.timeout_ms) / 1000.0
