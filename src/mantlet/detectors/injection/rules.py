"""The prompt-injection rule table: weighted RE2 patterns for known attack
phrasings, one row each in ``rules.yaml``, validated and compiled once.

A rule hit is evidence, not a verdict: every row carries a ``weight`` (how
strongly a match alone indicates an attack) and ``combined_score`` folds the
hits of one text into a single probability-like score with a noisy-OR, so one
weak signal ("from now on you will...") stays low while several together, or
one unambiguous phrase ("ignore all previous instructions"), score high.

Every row documents itself with ``examples`` it must match and
``near_misses`` (benign look-alikes) it must not; both are checked when the
table is compiled, so a row cannot drift away from its own documentation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mantlet.detectors._options import parse_table
from mantlet.detectors._re2 import compile_pattern, search_set
from mantlet.errors import ConfigError

__all__ = [
    "CATEGORIES",
    "Category",
    "InjectionRule",
    "InjectionRules",
    "RuleHit",
    "combined_score",
    "load_builtin_rules",
    "parse_rules",
]

Category = Literal[
    "INSTRUCTION_OVERRIDE",
    "JAILBREAK_PERSONA",
    "PROMPT_EXTRACTION",
    "FAKE_ROLE",
    "EXFILTRATION_LINK",
    "TOOL_HIJACK",
]
CATEGORIES: tuple[str, ...] = (
    "INSTRUCTION_OVERRIDE",
    "JAILBREAK_PERSONA",
    "PROMPT_EXTRACTION",
    "FAKE_ROLE",
    "EXFILTRATION_LINK",
    "TOOL_HIJACK",
)


class InjectionRule(BaseModel):
    """One row of the table; see the header of ``rules.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    category: Category
    weight: float = Field(ge=0.0, le=1.0)
    description: str = Field(min_length=1)
    pattern: str = Field(min_length=1)
    examples: list[str] = Field(default_factory=list)
    near_misses: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One match of one rule: character offsets into the scanned text."""

    rule_id: str
    category: str
    weight: float
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: InjectionRule
    regex: Any  # re2 pattern object (the binding is untyped)


class InjectionRules:
    """A compiled rule table; immutable and safe to share between threads."""

    def __init__(self, rules: Sequence[InjectionRule]) -> None:
        seen: set[str] = set()
        compiled: list[_Compiled] = []
        for rule in rules:
            if rule.id in seen:
                raise ConfigError(f"injection rule {rule.id!r}: duplicate rule id")
            seen.add(rule.id)
            regex = compile_pattern(rule.pattern, where=f"injection rule {rule.id!r}")
            if regex.fullmatch("") is not None:
                raise ConfigError(f"injection rule {rule.id!r}: pattern matches the empty string")
            compiled.append(_Compiled(rule, regex))
            _check_documentation(rule, regex)
        self._compiled = tuple(compiled)
        self._rules = tuple(c.rule for c in compiled)
        # One pass tells which rows match anywhere; only those run for spans
        # (most texts match none, so most scans are this one pass).
        self._prefilter = (
            search_set([r.pattern for r in self._rules], where="injection rules", max_mem=64 << 20)
            if compiled
            else None
        )

    @classmethod
    def builtin(cls) -> InjectionRules:
        """The shipped table (``rules.yaml``), loaded and compiled once."""
        if cls is InjectionRules:
            return _builtin_compiled()
        return cls(load_builtin_rules())

    @property
    def rules(self) -> tuple[InjectionRule, ...]:
        return self._rules

    def scan(self, text: str) -> list[RuleHit]:
        """Every match of every rule, sorted by start offset (ties keep table order).

        RE2 runs each row in time linear in the text. On ASCII text byte
        offsets are character offsets; otherwise the UTF-8 text is matched
        and all byte offsets are converted to characters in one pass.
        """
        if not text:
            return []
        ascii_text = text.isascii()
        data = text.encode("ascii") if ascii_text else text.encode("utf-8")
        if self._prefilter is None:
            return []
        found: list[tuple[InjectionRule, list[tuple[int, int]]]] = []
        for index in sorted(self._prefilter.Match(data) or ()):
            compiled = self._compiled[index]
            spans = [m.span() for m in compiled.regex.finditer(data)]
            if spans:
                found.append((compiled.rule, spans))
        if not found:
            return []
        if not ascii_text:
            chars = _char_offsets(data, {o for _, spans in found for span in spans for o in span})
            found = [(rule, [(chars[s], chars[e]) for s, e in spans]) for rule, spans in found]
        hits = [
            RuleHit(rule.id, rule.category, rule.weight, start, end)
            for rule, spans in found
            for start, end in spans
            if start < end
        ]
        hits.sort(key=_by_start)
        return hits


def _by_start(hit: RuleHit) -> int:
    return hit.start


def combined_score(hits: Sequence[RuleHit]) -> float:
    """Noisy-OR over the best hit of each distinct rule: ``1 - prod(1 - w)``.

    Repeating one phrase does not raise the score; independent rules do.
    """
    best: dict[str, float] = {}
    for hit in hits:
        if hit.weight > best.get(hit.rule_id, -1.0):
            best[hit.rule_id] = hit.weight
    if not best:
        return 0.0
    miss = math.prod(1.0 - min(1.0, max(0.0, w)) for w in best.values())
    return min(1.0, max(0.0, 1.0 - miss))


def parse_rules(raw: object, where: str) -> list[InjectionRule]:
    """Validate rows in the ``rules.yaml`` schema; errors name the row."""
    return parse_table(InjectionRule, raw, where)


@functools.cache
def load_builtin_rules() -> tuple[InjectionRule, ...]:
    text = resources.files("mantlet.detectors.injection").joinpath("rules.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError("injection rules.yaml: expected a mapping with a 'rules' list")
    return tuple(parse_rules(data.get("rules"), "injection rules.yaml: rules"))


@functools.cache
def _builtin_compiled() -> InjectionRules:
    return InjectionRules(load_builtin_rules())


def _check_documentation(rule: InjectionRule, regex: Any) -> None:
    for example in rule.examples:
        if regex.search(example) is None:
            raise ConfigError(
                f"injection rule {rule.id!r}: pattern does not match its example {example!r}"
            )
    for near_miss in rule.near_misses:
        if regex.search(near_miss) is not None:
            raise ConfigError(
                f"injection rule {rule.id!r}: pattern matches its near miss {near_miss!r}"
            )


def _char_offsets(data: bytes, offsets: set[int]) -> dict[int, int]:
    """Map UTF-8 byte offsets (all on character boundaries, as RE2 reports
    them) to character offsets, decoding each stretch of ``data`` once."""
    result: dict[int, int] = {}
    previous_byte = previous_char = 0
    for offset in sorted(offsets):
        previous_char += len(data[previous_byte:offset].decode("utf-8"))
        previous_byte = offset
        result[offset] = previous_char
    return result
