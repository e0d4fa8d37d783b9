"""Prompt injection and jailbreaks: direct, indirect (documents and tool
output) and obfuscated.

Three layers, each cheap enough to run on every request:
1. ``normalize`` undoes obfuscation (NFKC, invisible characters, homoglyphs,
   base64 / hex / URL-encoding / ROT13 / leetspeak segments); the later layers
   see the normalized text and every decoded variant.
2. ``rules`` — a weighted, documented rule table (``rules.yaml``) on RE2.
3. ``model`` — a learned classifier, one head for prompts and one for
   documents and tool output, max over windows: hashed word and character
   n-grams with a logistic head (``lexical``), MiniLM int8 embeddings with a
   logistic head (``minilm``), or the mean of both (``ensemble``).

The detector reports one ``PROMPT_INJECTION`` finding with the combined score
(noisy-OR of the model and the rules) plus one finding per rule category, so
a policy can act on the overall verdict and on categories separately.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mantlet.core.registry import register
from mantlet.core.types import Finding, PartKind, ScanContext, Side
from mantlet.detectors._options import parse_options
from mantlet.detectors.injection.normalize import Normalized, normalize
from mantlet.detectors.injection.rules import InjectionRules, RuleHit, combined_score

__all__ = ["InjectionDetector", "InjectionOptions"]

OVERALL_KIND = "PROMPT_INJECTION"
OBFUSCATION_KIND = "OBFUSCATED_TEXT"
OVERSIZE_KIND = "UNSCANNED_OVERSIZE"
_DOCUMENT_PARTS = {PartKind.DOCUMENT, PartKind.TOOL_OUTPUT, PartKind.TOOL_DEFINITION}
# Flags that alone are worth reporting: nobody hides benign text this way.
_SMUGGLING_FLAGS = {"tag_characters", "bidi_control"}
ModelKind = Literal["lexical", "minilm", "ensemble"]
DEFAULT_KIND: ModelKind = "lexical"


class InjectionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    use_model: bool = Field(True, description="Run the learned layer.")
    model_kind: ModelKind = Field(
        DEFAULT_KIND,
        description=(
            "The learned layer: hashed n-grams (fastest), MiniLM embeddings, or the"
            " mean of both (see the README for each one's measured accuracy)."
        ),
    )
    model_dir: Path | None = Field(None, description="Another model folder (with manifest.json).")
    model_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="sha256 of model_dir's manifest.json; required with model_dir.",
    )
    sentence_runs: bool = Field(
        True,
        description=(
            "Also score runs of whole sentences of longer texts (lexical and ensemble"
            " kinds), so one injected sentence is not outvoted by the benign text"
            " around it. Off: fewer false positives on long, instruction-heavy prompts"
            " (README, 'The injection detector')."
        ),
    )
    prompt_threshold: float | None = Field(
        None, gt=0.0, lt=1.0, description="Model probability mapped to score 0.5 for prompts."
    )
    document_threshold: float | None = Field(
        None, gt=0.0, lt=1.0, description="The same for documents and tool output."
    )
    allow_phrases: list[str] = Field(
        default_factory=list, description="Known-benign phrasings ignored for every tenant."
    )
    allow_phrases_by_tenant: dict[str, list[str]] = Field(
        default_factory=dict, description="Known-benign phrasings per tenant id."
    )
    min_model_words: int = Field(
        4,
        ge=1,
        description=(
            "Texts with fewer words get the rules only: an embedding of one or two words"
            " carries no context, and the head scores greetings like attacks."
        ),
    )
    max_model_chars: int = Field(
        200_000, gt=0, description="Longer parts get the rules only and an oversize finding."
    )

    @model_validator(mode="after")
    def _pinned(self) -> InjectionOptions:
        # Fail closed: a model folder nobody pinned could be swapped on disk.
        if self.model_dir is not None and self.model_sha256 is None:
            raise ValueError("model_dir needs model_sha256 (the sha256 of its manifest.json)")
        return self


@dataclass(frozen=True, slots=True)
class _Scored:
    model: float  # calibrated: 0.5 at the head's threshold
    hits: list[tuple[RuleHit, tuple[int, int], str]]  # hit, span in the original, where
    flags: frozenset[str]


class InjectionDetector:
    name = "injection"
    sides = Side.INPUT
    # The learned layer only feeds the combined PROMPT_INJECTION score.
    slow_kinds = frozenset({OVERALL_KIND})
    reads_original = True  # its normalizer strips them and flags their use

    def __init__(self, options: InjectionOptions | None = None) -> None:
        self._options = options or InjectionOptions()
        # Set from the options the policy gave, so the rules-only copy still
        # reports parts too long for the model as the whole detector does.
        self._flag_oversize = self._options.use_model
        self._rules_only: InjectionDetector | None = None
        self._rules = InjectionRules.builtin()
        self._model: Any = None
        self._model_lock = threading.Lock()
        self._allow = _phrase_pattern(self._options.allow_phrases)
        self._allow_by_tenant = {
            tenant: _phrase_pattern(phrases)
            for tenant, phrases in self._options.allow_phrases_by_tenant.items()
        }

    def warm_up(self) -> None:
        """Load and verify the model now instead of on the first request."""
        model = self._get_model()
        if model is not None:
            model.warm_up(self._options.model_kind)

    @property
    def light(self) -> bool:
        """Without the model it is normalization and RE2: cheap enough inline."""
        return not self._options.use_model

    @property
    def gil_bound(self) -> bool:
        """The lexical model is Python and small numpy products: a worker
        thread gives it no parallelism (see ``pipeline.runner``). ONNX
        Runtime, which the other kinds use, runs outside the lock."""
        return self._options.model_kind == "lexical"

    def without_slow_layer(self) -> InjectionDetector:
        """Normalization and rules only (see ``LayeredDetector``)."""
        if self._rules_only is None:
            copy = InjectionDetector(self._options.model_copy(update={"use_model": False}))
            copy._flag_oversize = self._flag_oversize
            self._rules_only = copy
        return self._rules_only

    def _get_model(self) -> Any:
        if not self._options.use_model:
            return None
        with self._model_lock:
            if self._model is None:
                from mantlet.detectors.injection.model import shared_model

                self._model = shared_model(self._options.model_dir, self._options.model_sha256)
            return self._model

    def detect(self, text: str, context: ScanContext) -> list[Finding]:
        return self.detect_batch([text], context)[0]

    def detect_batch(self, texts: Sequence[str], context: ScanContext) -> list[list[Finding]]:
        """Scan several texts with one model call (the gateway batches parts)."""
        document = context.part in _DOCUMENT_PARTS
        prepared = [self._prepare(text, context) for text in texts]
        model_scores = self._model_scores(prepared, document, context.tenant or "")
        results = []
        for text, normalized, score in zip(texts, prepared, model_scores, strict=True):
            scored = self._score(normalized, score)
            results.append(self._findings(text, scored, document))
        return results

    # -- internals -----------------------------------------------------------

    def _prepare(self, text: str, context: ScanContext) -> Normalized:
        allowed = [self._allow, self._allow_by_tenant.get(context.tenant or "")]
        for pattern in allowed:
            if pattern is not None:
                # Blank the phrase out but keep offsets: same length, spaces.
                text = pattern.sub(lambda m: " " * len(m.group()), text)
        return normalize(text)

    def _model_scores(
        self, prepared: Sequence[Normalized], document: bool, scope: str
    ) -> list[float]:
        model = self._get_model()
        if model is None:
            return [0.0 for _ in prepared]
        head = "document" if document else "prompt"
        kind = self._options.model_kind
        override = self._options.document_threshold if document else self._options.prompt_threshold
        threshold = override or model.thresholds[kind][head]
        candidates: list[str] = []
        owners: list[int] = []
        for index, normalized in enumerate(prepared):
            texts = [normalized.text, *(v.text for v in normalized.variants)]
            for candidate in texts:
                words = len(candidate.split())
                if (
                    words >= self._options.min_model_words
                    and len(candidate) <= self._options.max_model_chars
                ):
                    candidates.append(candidate)
                    owners.append(index)
        best = [0.0 for _ in prepared]
        if candidates:
            scores = model.score(candidates, head, scope, kind, self._options.sentence_runs)
            for owner, probability in zip(owners, scores, strict=True):
                best[owner] = max(best[owner], _calibrate(probability, threshold))
        return best

    def _score(self, normalized: Normalized, model_score: float) -> _Scored:
        hits: list[tuple[RuleHit, tuple[int, int], str]] = []
        for hit in self._rules.scan(normalized.text):
            hits.append((hit, normalized.original_span(hit.start, hit.end), "text"))
        for variant in normalized.variants:
            for hit in self._rules.scan(variant.text):
                hits.append((hit, (variant.start, variant.end), variant.kind))
        return _Scored(model_score, hits, normalized.flags)

    def _findings(self, text: str, scored: _Scored, document: bool) -> list[Finding]:
        findings: list[Finding] = []
        rule_score = combined_score([hit for hit, _, _ in scored.hits])
        overall = 1.0 - (1.0 - scored.model) * (1.0 - rule_score)
        categories = sorted({hit.category for hit, _, _ in scored.hits})
        decoded = sorted({where for _, _, where in scored.hits if where != "text"})
        if overall > 0.0:
            detail = (
                f"model {scored.model:.2f}, rules {rule_score:.2f}"
                + (f" ({', '.join(categories)})" if categories else "")
                + (f", decoded from {', '.join(decoded)}" if decoded else "")
                + (" [document head]" if document else "")
            )
            findings.append(Finding(self.name, OVERALL_KIND, 0, len(text), overall, detail))
        strongest: dict[str, tuple[RuleHit, tuple[int, int], str]] = {}
        for hit, span, where in scored.hits:
            if hit.category not in strongest or hit.weight > strongest[hit.category][0].weight:
                strongest[hit.category] = (hit, span, where)
        for category, (hit, (start, end), where) in sorted(strongest.items()):
            via = "" if where == "text" else f", decoded from {where}"
            detail = f"rule {hit.rule_id}{via}"
            findings.append(Finding(self.name, category, start, end, hit.weight, detail))
        smuggling = sorted(scored.flags & _SMUGGLING_FLAGS)
        if smuggling:
            detail = "hidden characters: " + ", ".join(smuggling)
            findings.append(Finding(self.name, OBFUSCATION_KIND, 0, len(text), 0.6, detail))
        if len(text) > self._options.max_model_chars and self._flag_oversize:
            detail = f"longer than {self._options.max_model_chars} characters: rules only"
            findings.append(Finding(self.name, OVERSIZE_KIND, 0, len(text), 1.0, detail))
        return findings


def _calibrate(probability: float, threshold: float) -> float:
    """Piecewise-linear map that sends the head's threshold to 0.5, so policy
    thresholds read the same for every detector (0.5 = the model's own cut)."""
    if probability < threshold:
        return 0.5 * probability / threshold
    return 0.5 + 0.5 * (probability - threshold) / (1.0 - threshold)


def _phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str] | None:
    # Literal, escaped alternatives: safe for Python's `re` (no backtracking blow-up).
    cleaned = sorted({p.strip() for p in phrases if p.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    return re.compile("|".join(re.escape(p) for p in cleaned), re.IGNORECASE)


@register("injection")
def _factory(options: Mapping[str, Any]) -> InjectionDetector:
    return InjectionDetector(parse_options(InjectionOptions, options, "injection"))
