"""Secrets: provider API keys and tokens, private keys, JWTs, credentials in
URLs and Authorization headers, and passwords or keys assigned in code and
config.

Formats are rows of a data table (``rules.yaml``) run on RE2, so scanning is
linear in the input whatever an attacker sends. Each row runs only when one of
its keywords occurs in the text, which keeps the cost close to one pass over
the text for ordinary prompts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import re2
from pydantic import BaseModel, ConfigDict, Field

from mantlet.core.registry import register
from mantlet.core.types import Finding, ScanContext, Side
from mantlet.detectors._options import parse_options
from mantlet.detectors._re2 import Subject, search_set, value_matches
from mantlet.detectors._spans import strongest_per_region
from mantlet.detectors.secrets.rules import (
    CompiledRule,
    builtin_rules,
    compile_rules,
    parse_rules,
)
from mantlet.detectors.secrets.validators import Candidate, is_placeholder, shannon_entropy
from mantlet.errors import ConfigError

__all__ = ["SecretsDetector", "SecretsOptions"]


class SecretsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled_kinds: list[str] = Field(
        default_factory=list, description="Finding kinds to skip, e.g. [JWT, PASSWORD]."
    )
    disabled_rules: list[str] = Field(default_factory=list, description="Rule ids to skip.")
    extra_rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Additional rows in the rules.yaml schema (your own token formats).",
    )


class SecretsDetector:
    name = "secrets"
    sides = Side.BOTH
    light = True  # linear-time pass, no model

    def __init__(self, options: SecretsOptions | None = None) -> None:
        options = options or SecretsOptions()
        known = {r.id for r in builtin_rules()}
        unknown = sorted(set(options.disabled_rules) - known)
        if unknown:
            raise ConfigError(f"invalid options for detector 'secrets': unknown rule(s) {unknown}")
        extra = parse_rules(options.extra_rules, "options.extra_rules")
        clashes = sorted(known.intersection(r.id for r in extra))
        if clashes:
            raise ConfigError(
                f"invalid options for detector 'secrets': duplicate rule id(s) {clashes}"
            )
        rules = [
            r
            for r in (*builtin_rules(), *extra)
            if r.id not in options.disabled_rules and r.kind not in options.disabled_kinds
        ]
        self._rules = compile_rules(rules, "rules")
        self._keywords = sorted({k for compiled in self._rules for k in compiled.rule.keywords})
        self._keyword_set = search_set(
            [re2.escape(k) for k in self._keywords], where="secrets keywords"
        )

    @property
    def rules(self) -> tuple[CompiledRule, ...]:
        return self._rules

    def detect(self, text: str, context: ScanContext) -> list[Finding]:
        lowered = text.lower()
        findings: list[Finding] = []
        # Repeated values (one secret pasted many times, or a flood crafted to
        # slow the scan down) are validated once per call.
        scores: dict[tuple[str, Candidate], float | None] = {}
        subject = Subject(text)
        # Which rule keywords occur anywhere, in one pass (the binding answers
        # None, not an empty list, when none does).
        found = self._keyword_set.Match(lowered) if self._keywords else None
        present = {self._keywords[i] for i in found or ()}
        for compiled in self._rules:
            keywords = compiled.rule.keywords
            if keywords and present.isdisjoint(keywords):
                continue
            findings.extend(self._matches(compiled, text, subject, scores))
        # Where rules overlap (a JWT inside an Authorization header, an OpenAI
        # key assigned to `api_key`), keep the most specific finding only.
        return strongest_per_region(findings)

    def _matches(
        self,
        compiled: CompiledRule,
        text: str,
        subject: Subject,
        scores: dict[tuple[str, Candidate], float | None],
    ) -> Iterable[Finding]:
        rule = compiled.rule
        key, quote = compiled.key_group, compiled.quote_group
        for match in value_matches(compiled.regex, subject, compiled.secret_group):
            start, end = match.span(compiled.secret_group)
            candidate = Candidate(
                value=text[start:end],
                key=_group_text(text, match, key),
                quoted=quote is not None and match.span(quote)[1] > match.span(quote)[0],
            )
            memo_key = (rule.id, candidate)
            if memo_key in scores:
                score = scores[memo_key]
            else:
                score = scores[memo_key] = self._score(compiled, candidate)
            if score is None:
                continue
            yield Finding(self.name, rule.kind, start, end, score, detail=rule.description)

    @staticmethod
    def _score(compiled: CompiledRule, candidate: Candidate) -> float | None:
        rule = compiled.rule
        if rule.reject_placeholders and is_placeholder(candidate.value):
            return None
        if rule.min_entropy is not None and shannon_entropy(candidate.value) < rule.min_entropy:
            return None
        score = rule.score
        for validator in compiled.validators:
            adjustment = validator(candidate)
            if adjustment is None:
                return None
            score += adjustment
        return min(1.0, max(0.0, score))


def _group_text(text: str, match: Any, group: int | None) -> str | None:
    if group is None:
        return None
    start, end = match.span(group)
    return text[start:end] if start >= 0 else None


@register("secrets")
def _factory(options: Mapping[str, Any]) -> SecretsDetector:
    return SecretsDetector(parse_options(SecretsOptions, options, "secrets"))
