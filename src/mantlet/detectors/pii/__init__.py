"""PII: structured identifiers (e-mail, phones, payment cards, IBANs, national
IDs, addresses, ...) from a data table of RE2 patterns with checksums and
context words, plus names, places and organizations from a per-language NER
model when the policy enables one.

One RE2 set pass tells which rows match anywhere; only those rows run again
for their spans, so the cost stays close to one linear pass over the text.
Findings carry offsets, never the matched value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mantlet.core.registry import register
from mantlet.core.types import Finding, ScanContext, Side
from mantlet.detectors._options import parse_options
from mantlet.detectors._re2 import Subject, value_matches
from mantlet.detectors._spans import strongest_per_region
from mantlet.detectors.pii.ner import ENTITIES, NerBackend, known_backend, load_backend
from mantlet.detectors.pii.rules import (
    CompiledRule,
    RuleSet,
    builtin_rules,
    compile_rules,
    parse_rules,
)
from mantlet.detectors.pii.validators import regions_named
from mantlet.errors import ConfigError

__all__ = ["SURROGATES_KEY", "PiiDetector", "PiiOptions"]

_BEFORE, _AFTER = 48, 24
# Validation results of one call: (rule id, value, regions named) -> score.
_Memo = dict[tuple[str, str, tuple[str, ...]], float | None]
# An address from the NER model scores below the policy's usual 0.5 unless a
# context word lifts it (see _named).
_NER_ADDRESS_SCORE = 0.45
# ScanContext.metadata key: surrogates a pseudonymizer put in the text (its
# realistic fakes look like PII; redacting them would make them unrestorable).
SURROGATES_KEY = "pii_surrogates"
# Python's `re` on a bounded window (at most 72 characters), never the input.
_WORD = re.compile(r"[\w#@][\w#.@/-]*")
_GAP = re.compile(r"\s+")
# A first group shaped like a postal code (4-5 digits, no trunk 0, then
# whitespace): the number after it may be a phone number on its own.
_POSTCODE_FIRST = re.compile(r"[1-9]\d{3,4}\s")


class PiiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ner: str | None = Field(
        None,
        description="NER backend for PERSON/LOCATION/ORGANIZATION: 'en' (a CRF, built "
        "in, about 0.2 ms a message) or 'en_spacy' (spaCy, needs mantlet[pii]); null: "
        "structured entities only.",
    )
    entities: list[str] | None = Field(None, description="Finding kinds to report (default: all).")
    disabled_rules: list[str] = Field(default_factory=list, description="Rule ids to skip.")
    extra_rules: list[dict[str, Any]] = Field(
        default_factory=list, description="Additional rows in the rules.yaml schema."
    )
    context_boost: float = Field(
        0.25, ge=0.0, le=1.0, description="Score added by a context word near a match."
    )

    @field_validator("ner")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        return known_backend(value)


class PiiDetector:
    name = "pii"
    sides = Side.BOTH

    def __init__(self, options: PiiOptions | None = None) -> None:
        self.options = options = options or PiiOptions()
        known = {r.id for r in builtin_rules()}
        unknown = sorted(set(options.disabled_rules) - known)
        if unknown:
            raise ConfigError(f"invalid options for detector 'pii': unknown rule(s) {unknown}")
        extra = parse_rules(options.extra_rules, "options.extra_rules")
        clashes = sorted(known.intersection(r.id for r in extra))
        if clashes:
            raise ConfigError(f"invalid options for detector 'pii': duplicate rule id(s) {clashes}")
        wanted = set(options.entities) if options.entities is not None else None
        rules = [
            r
            for r in (*builtin_rules(), *extra)
            if r.id not in options.disabled_rules and (wanted is None or r.kind in wanted)
        ]
        self._rules: RuleSet = compile_rules(rules, "rules")
        self._ner_language = options.ner
        if options.ner is not None and wanted is not None and not wanted & set(ENTITIES):
            self._ner_language = None
        self._wanted = wanted
        self._ner: NerBackend | None = None

    @property
    def light(self) -> bool:
        """Rules only (no NER model): cheap enough for the caller's thread."""
        return not self._ner_language

    @property
    def kinds(self) -> list[str]:
        kinds = {c.rule.kind for c in self._rules.rules}
        if self._ner_language:
            kinds.update(ENTITIES)
        return sorted(kinds)

    def warm_up(self) -> None:
        """Load and verify the NER model now (the pipeline calls this at start-up)."""
        if self._ner_language and self._ner is None:
            self._ner = load_backend(self._ner_language)

    def detect(self, text: str, context: ScanContext) -> list[Finding]:
        findings = self._structured(text, {})
        if self._ner_language and _may_name(text):
            self.warm_up()
            assert self._ner is not None
            findings.extend(self._named(text, self._ner.entities(text, context.tenant or "")))
        surrogates = context.metadata.get(SURROGATES_KEY)
        if surrogates:
            findings = _outside(findings, _occurrences(text, surrogates))
        return strongest_per_region(_joined_addresses(findings))

    def detect_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """Batch form of ``detect`` (the NER model runs batched): for bulk
        data such as CSV columns and benchmarks."""
        named: list[list[Any]] = [[] for _ in texts]
        if self._ner_language:
            self.warm_up()
            assert self._ner is not None
            named = self._ner.entities_many(texts)
        memo: _Memo = {}  # one caller's texts share validations
        return [
            strongest_per_region(
                _joined_addresses([*self._structured(t, memo), *self._named(t, spans)])
            )
            for t, spans in zip(texts, named, strict=True)
        ]

    # -- internals -----------------------------------------------------------

    def _structured(self, text: str, memo: _Memo) -> list[Finding]:
        subject = Subject(text)
        rows = self._rules.matching(subject.data)
        if not rows:
            return []
        lowered = _lowered(text)
        named = regions_named(text) if any(r.wants_regions for r in rows) else ()
        findings: list[Finding] = []
        for compiled in rows:
            findings.extend(self._matches(compiled, text, lowered, subject, named, memo))
        return findings

    def _matches(
        self,
        compiled: CompiledRule,
        text: str,
        lowered: str,
        subject: Subject,
        named: tuple[str, ...],
        memo: _Memo,
    ) -> Iterable[Finding]:
        rule = compiled.rule
        for match in value_matches(compiled.regex, subject, compiled.value_group):
            start, end = match.span(compiled.value_group)
            score = _validated(compiled, text[start:end], named, memo)
            if rule.trim_left and (score is None or _POSTCODE_FIRST.match(text, start, end)):
                start, score = _valid_tail(compiled, text, start, end, named, score, memo)
            if score is None:
                continue
            if compiled.has_context:
                verdict = _context(lowered, start, end, rule.context, rule.negative_context)
                if rule.context_required and verdict <= 0:
                    continue
                score += verdict * self.options.context_boost
            elif rule.context_required:
                continue
            score = min(1.0, max(0.0, score))
            yield Finding(self.name, rule.kind, start, end, score, detail=rule.id)

    def _named(self, text: str, spans: Sequence[Any]) -> list[Finding]:
        wanted = self._wanted
        lowered = _lowered(text) if any(s.label == "STREET_ADDRESS" for s in spans) else ""
        findings = []
        for span in spans:
            if wanted is not None and span.label not in wanted:
                continue
            score = span.score
            if span.label == "STREET_ADDRESS":
                # Like the address rules: the model also calls "3 Barbecue
                # Chicken" or "the corner of Sixth Avenue" an address, so its
                # addresses count only next to a word that announces one.
                verdict = _context(lowered, span.start, span.end, _address_context(), ())
                score = _NER_ADDRESS_SCORE + verdict * self.options.context_boost
            findings.append(Finding(self.name, span.label, span.start, span.end, score, "ner"))
        return findings


def _validated(
    compiled: CompiledRule, value: str, named: tuple[str, ...], memo: _Memo
) -> float | None:
    """The rule's score after its validators, memoised for one call only: a
    value repeated in a text (or a flood of one crafted to slow the scan)
    is checked once, while a memo kept across calls would answer faster for
    a value some other caller sent, which a tenant could time."""
    key = (compiled.rule.id, value, named)
    if key in memo:
        return memo[key]
    score = compiled.rule.score
    for validator in compiled.validators:
        adjustment = validator(value, named)
        if adjustment is None:
            memo[key] = None
            return None
        score += adjustment
    memo[key] = score
    return score


def _valid_tail(
    compiled: CompiledRule,
    text: str,
    start: int,
    end: int,
    named: tuple[str, ...],
    score: float | None,
    memo: _Memo,
) -> tuple[int, float | None]:
    """The longest tail of a match, starting after whitespace, that validates
    at least as well as the whole: RE2 does not backtrack into a match, so in
    "Hungary 34796 (37) 788-063" the ZIP code would otherwise either take the
    phone number down with it or be reported as part of it."""
    at = start
    while (gap := _GAP.search(text, at, end)) is not None:
        at = gap.end()
        tail = _validated(compiled, text[at:end], named, memo)
        if tail is not None and (score is None or tail >= score):
            return at, tail
    return start, score


@functools.cache
def _address_context() -> tuple[str, ...]:
    """The address rules' context words (read from the rule table on first use)."""
    return tuple(
        sorted({w for r in builtin_rules() if r.kind == "STREET_ADDRESS" for w in r.context})
    )


def _joined_addresses(findings: list[Finding]) -> list[Finding]:
    """Overlapping addresses become one: the rules find "41 Harbour Road",
    the NER model "41 Harbour Road, Cobh, Ireland"; keeping only the stronger
    would leave the town and country of a redacted address in the clear."""
    addresses = sorted((f for f in findings if f.kind == "STREET_ADDRESS"), key=lambda f: f.start)
    if len(addresses) < 2:
        return findings
    joined: list[Finding] = []
    for finding in addresses:
        last = joined[-1] if joined else None
        if last is None or finding.start >= last.end:
            joined.append(finding)
            continue
        stronger = last if last.score >= finding.score else finding
        joined[-1] = replace(stronger, start=last.start, end=max(last.end, finding.end))
    return [*(f for f in findings if f.kind != "STREET_ADDRESS"), *joined]


def _occurrences(text: str, surrogates: Iterable[str]) -> list[tuple[int, int]]:
    spans = []
    for surrogate in surrogates:
        at = text.find(surrogate) if surrogate else -1
        while at >= 0:
            spans.append((at, at + len(surrogate)))
            at = text.find(surrogate, at + 1)
    return spans


def _outside(findings: list[Finding], spans: list[tuple[int, int]]) -> list[Finding]:
    return [f for f in findings if not any(f.start < e and s < f.end for s, e in spans)]


def _lowered(text: str) -> str:
    """Lower case with the offsets kept: ``"İ".lower()`` is two characters,
    so plain ``lower()`` on Turkish text would shift every context window."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def _may_name(text: str) -> bool:
    """Names need letters; skip the model otherwise. Not capitals: people type
    "my name is john smith" in chat, and on all-lower-case text the model
    still finds about a third of the names at 0.7 precision (docs/pii.md)."""
    return any(c.isalpha() for c in text)


def _context(
    lowered: str, start: int, end: int, positive: Sequence[str], negative: Sequence[str]
) -> int:
    """+1 when the context word nearest the match is a positive one, -1 when
    it is a negative one (an order number, a licence), 0 when there is none.
    Words count at the start of a word (``phone`` in ``phone:``, ``expir`` in
    ``expires``), never inside one (``cc`` in ``accept``)."""
    before = " " + " ".join(_WORD.findall(lowered[max(0, start - _BEFORE) : start])) + " "
    after = " " + " ".join(_WORD.findall(lowered[end : end + _AFTER])) + " "
    best_distance, verdict = None, 0
    for words, sign in ((positive, 1), (negative, -1)):
        for word in words:
            at = before.rfind(" " + word)
            if at >= 0:
                distance = len(before) - at
                if best_distance is None or distance < best_distance:
                    best_distance, verdict = distance, sign
            at = after.find(" " + word)
            if at >= 0:
                distance = 2 * at + 8  # a word after the match counts for less
                if best_distance is None or distance < best_distance:
                    best_distance, verdict = distance, sign
    return verdict


@register("pii")
def _factory(options: Mapping[str, Any]) -> PiiDetector:
    return PiiDetector(parse_options(PiiOptions, options, "pii"))
