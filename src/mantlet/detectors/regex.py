"""User-defined patterns from the policy file (deny-lists, internal project
code names, ticket formats). Patterns run on RE2, so a policy author cannot
write a regex that backtracks catastrophically on attacker-supplied text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mantlet.core.registry import register
from mantlet.core.types import Finding, ScanContext, Side
from mantlet.detectors._options import parse_options
from mantlet.detectors._re2 import compile_pattern


class PatternRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="Finding kind, UPPER_SNAKE.")
    pattern: str = Field(min_length=1, description="RE2 syntax (no lookaround, no backreferences).")
    score: float = Field(1.0, ge=0.0, le=1.0)
    ignore_case: bool = False


class RegexOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patterns: list[PatternRule] = Field(default_factory=list)


class RegexDetector:
    name = "regex"
    sides = Side.BOTH
    light = True  # linear-time pass, no model

    def __init__(self, options: RegexOptions) -> None:
        self._rules = [
            (
                rule,
                compile_pattern(
                    rule.pattern,
                    ignore_case=rule.ignore_case,
                    where=f"invalid options for detector 'regex': patterns[{index}].pattern",
                ),
            )
            for index, rule in enumerate(options.patterns)
        ]

    def detect(self, text: str, context: ScanContext) -> list[Finding]:
        findings = []
        for rule, compiled in self._rules:
            for match in compiled.finditer(text):
                start, end = match.span()
                if start == end:
                    continue
                findings.append(
                    Finding(self.name, rule.kind, start, end, rule.score, detail="policy pattern")
                )
        return findings


@register("regex")
def _factory(options: Mapping[str, Any]) -> RegexDetector:
    return RegexDetector(parse_options(RegexOptions, options, "regex"))
