"""The secret-format table: rows in ``rules.yaml`` (shipped) plus any rows a
policy adds, validated and compiled once."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mantlet.detectors._options import parse_table
from mantlet.detectors._re2 import compile_pattern
from mantlet.detectors.secrets.validators import VALIDATORS, Validator


class SecretRule(BaseModel):
    """One row of the table; see the header of ``rules.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    description: str = ""
    pattern: str = Field(min_length=1)
    keywords: tuple[str, ...] = ()
    score: float = Field(0.8, ge=0.0, le=1.0)
    validators: tuple[str, ...] = ()
    min_entropy: float | None = Field(None, ge=0.0, le=8.0)
    reject_placeholders: bool = True

    @field_validator("keywords")
    @classmethod
    def _lower_case(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(k != k.lower() or not k for k in value):
            raise ValueError("keywords must be non-empty and lower-case")
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
    rule: SecretRule
    regex: Any  # re2 pattern object (the binding is untyped)
    validators: tuple[Validator, ...]
    # re2's match objects take group numbers only, so names are resolved once.
    secret_group: int  # 0 (the whole match) when the pattern has no `secret` group
    key_group: int | None
    quote_group: int | None


def compile_rules(rules: Sequence[SecretRule], where: str) -> tuple[CompiledRule, ...]:
    compiled = []
    for index, rule in enumerate(rules):
        regex = compile_pattern(rule.pattern, where=f"{where}[{index}] ({rule.id}).pattern")
        groups: dict[str, int] = dict(regex.groupindex)
        compiled.append(
            CompiledRule(
                rule=rule,
                regex=regex,
                validators=tuple(VALIDATORS[name] for name in rule.validators),
                secret_group=groups.get("secret", 0),
                key_group=groups.get("key"),
                quote_group=groups.get("quote"),
            )
        )
    return tuple(compiled)


def parse_rules(raw: object, where: str) -> list[SecretRule]:
    return parse_table(SecretRule, raw, where)


@functools.cache
def builtin_rules() -> tuple[SecretRule, ...]:
    text = resources.files("mantlet.detectors.secrets").joinpath("rules.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    return tuple(parse_rules(data.get("rules"), "secrets rules.yaml: rules"))
