"""The PII format table: rows of ``rules.yaml`` (shipped) plus any rows a
policy adds, validated, compiled once, and gathered into one RE2 set so a
text is scanned once for all formats before any row runs on its own."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mantlet.detectors._options import parse_table
from mantlet.detectors._re2 import compile_pattern, search_set
from mantlet.detectors.pii.validators import VALIDATORS, Validator


class PiiRule(BaseModel):
    """One row of the table; see the header of ``rules.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    pattern: str = Field(min_length=1)
    score: float = Field(0.8, ge=0.0, le=1.0)
    validators: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    context_required: bool = False
    negative_context: tuple[str, ...] = ()
    trim_left: bool = False

    @field_validator("context", "negative_context")
    @classmethod
    def _lower_case(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(w != w.lower() or not w.strip() for w in value):
            raise ValueError("context words must be non-empty and lower-case")
        return value

    @field_validator("validators")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(VALIDATORS))
        if unknown:
            raise ValueError(f"unknown validator(s) {unknown}; known: {sorted(VALIDATORS)}")
        return value


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: PiiRule
    regex: Any  # re2 pattern object (the binding is untyped)
    validators: tuple[Validator, ...]
    value_group: int  # 0 (the whole match) when the pattern has no `value` group
    wants_regions: bool  # a validator reads the countries the text names

    @property
    def has_context(self) -> bool:
        return bool(self.rule.context or self.rule.negative_context)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Compiled rows plus the RE2 set that tells, in one pass over a text,
    which rows match anywhere in it."""

    rules: tuple[CompiledRule, ...]
    prefilter: Any  # re2.Set

    def matching(self, subject: str | bytes) -> list[CompiledRule]:
        if not self.rules:
            return []
        # The binding answers None, not an empty list, when no row matches.
        return [self.rules[i] for i in sorted(self.prefilter.Match(subject) or ())]


def compile_rules(rules: Sequence[PiiRule], where: str) -> RuleSet:
    compiled = []
    for index, rule in enumerate(rules):
        regex = compile_pattern(rule.pattern, where=f"{where}[{index}] ({rule.id}).pattern")
        groups: dict[str, int] = dict(regex.groupindex)
        compiled.append(
            CompiledRule(
                rule=rule,
                regex=regex,
                validators=tuple(VALIDATORS[name] for name in rule.validators),
                value_group=groups.get("value", 0),
                wants_regions="phone" in rule.validators,
            )
        )
    # The set's DFA holds every row at once, hence the larger memory budget.
    prefilter = search_set([r.pattern for r in rules], where=where, max_mem=64 << 20)
    return RuleSet(tuple(compiled), prefilter)


def parse_rules(raw: object, where: str) -> list[PiiRule]:
    return parse_table(PiiRule, raw, where)


@functools.cache
def builtin_rules() -> tuple[PiiRule, ...]:
    text = resources.files("mantlet.detectors.pii").joinpath("rules.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    return tuple(parse_rules(data.get("rules"), "pii rules.yaml: rules"))
