"""``Shield``: the guard pipeline's public face. It turns a policy into
detector instances once, then checks requests and responses against it."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from mantlet.core.folding import FoldedText, fold, seen_text, unfold
from mantlet.core.registry import create
from mantlet.core.types import (
    Action,
    Detector,
    DetectorReport,
    Finding,
    LayeredDetector,
    PartKind,
    RunStatus,
    Side,
    Verdict,
)
from mantlet.errors import ConfigError, InvalidInputError, PolicyError
from mantlet.pipeline.parts import (
    TextPart,
    field_parts,
    message_parts,
    rebuild_fields,
    rebuild_messages,
    text_parts,
)
from mantlet.pipeline.redaction import (
    PlaceholderBook,
    RedactionCandidate,
    apply_regions,
    merge_regions,
)
from mantlet.pipeline.runner import (
    Job,
    Launched,
    Outcome,
    collect,
    run_async,
    run_gate,
    run_sync,
    runs_inline,
)
from mantlet.policy.loader import DEFAULT_PROFILE, load_policy
from mantlet.policy.model import OnError, Policy

if TYPE_CHECKING:
    from mantlet.detectors.injection.normalize import Variant

Content = str | Sequence[Mapping[str, Any]]
log = logging.getLogger(__name__)
DEFERRED_NOTE = "flag-only layer; ran alongside the upstream call"
# The finding that records an image, audio or file item no detector read.
MEDIA_DETECTOR, UNSCANNED_MEDIA = "media", "UNSCANNED_MEDIA"


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    side: Side
    parts: list[TextPart]
    jobs: list[Job]
    skipped: list[DetectorReport]
    messages: Sequence[Mapping[str, Any]] | None
    has_documents: bool
    fields: Mapping[str, Any] | None
    started: float


class Shield:
    """Checks text or OpenAI-style messages against a policy.

    Thread-safe and meant to be long-lived: build one per policy and reuse it.
    """

    def __init__(
        self, policy: Policy, *, max_workers: int | None = None, warm_up: bool = True
    ) -> None:
        """``warm_up`` loads and verifies detector models now, so a missing or
        tampered model fails at start-up rather than on the first request."""
        self.policy = policy
        self._detectors: dict[str, Detector] = {}
        for name, settings in policy.detectors.items():
            if not settings.enabled:
                continue
            try:
                self._detectors[name] = create(name, settings.options)
            except ConfigError as exc:
                raise PolicyError(
                    f"<policy {policy.name}>", [(f"detectors.{name}.options", exc.diagnostics())]
                ) from None
            warm = getattr(self._detectors[name], "warm_up", None)
            if warm_up and callable(warm):
                warm()
        self._fast: dict[str, Detector] = {
            name: detector.without_slow_layer()
            for name, detector in self._detectors.items()
            if isinstance(detector, LayeredDetector)
            and all(
                policy.detectors[name].action_for(kind).severity <= Action.FLAG.severity
                for kind in detector.slow_kinds
            )
        }
        workers = max_workers or max(4, 2 * len(self._detectors), (os.cpu_count() or 1) + 2)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="mantlet-detector"
        )

    @classmethod
    def from_policy(cls, policy: str | Path | Policy = DEFAULT_PROFILE) -> Shield:
        """Build from a shipped profile name, a YAML file path, or a ``Policy``."""
        return cls(policy if isinstance(policy, Policy) else load_policy(policy))

    # -- public entry points -------------------------------------------------

    def check_input(
        self,
        content: Content,
        *,
        documents: Sequence[str] | None = None,
        fields: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """``fields``: the request's other top-level fields (``tools``,
        ``response_format``, ...); every string in them is scanned and the
        verdict's ``sanitized_fields`` carries them redacted."""
        plan = self._plan(content, documents, Side.INPUT, tenant, metadata, fields)
        return self._assemble(plan, run_sync(self._executor, plan.jobs))

    def check_output(
        self,
        content: Content,
        *,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """``metadata`` reaches every detector's ScanContext (e.g. the request's
        system-prompt canaries for the canary detector)."""
        plan = self._plan(content, None, Side.OUTPUT, tenant, metadata)
        return self._assemble(plan, run_sync(self._executor, plan.jobs))

    async def acheck_input(
        self,
        content: Content,
        *,
        documents: Sequence[str] | None = None,
        fields: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Verdict:
        plan = self._plan(content, documents, Side.INPUT, tenant, metadata, fields)
        return self._assemble(plan, await run_async(self._executor, plan.jobs))

    async def acheck_output(
        self,
        content: Content,
        *,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Verdict:
        plan = self._plan(content, None, Side.OUTPUT, tenant, metadata)
        return self._assemble(plan, await run_async(self._executor, plan.jobs))

    async def astart_input(
        self,
        content: Content,
        *,
        documents: Sequence[str] | None = None,
        fields: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> StagedCheck:
        """The input check in two stages, for a caller with other work to
        overlap (the gateway's upstream call). ``gate`` holds everything the
        policy may block or redact on; slow layers whose findings it only
        flags keep running in worker threads, and ``final()`` adds them.
        Without such layers the gate is already the final verdict. A layered
        detector that runs on the caller's thread anyway (GIL-bound, short
        text: ``runner.runs_inline``) runs whole in the gate instead."""
        plan = self._plan(content, documents, Side.INPUT, tenant, metadata, fields)
        gate_jobs, late_jobs = [], []
        for job in plan.jobs:
            fast = self._fast.get(job.name)
            if fast is None or runs_inline(job):
                gate_jobs.append(job)  # nothing to overlap, or nothing to gain by it
            else:
                late_jobs.append(job)
                gate_jobs.append(dataclasses.replace(job, detector=fast))
        outcomes, late = await run_gate(self._executor, gate_jobs, late_jobs)
        return StagedCheck(self, plan, outcomes, late)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Shield:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _plan(
        self,
        content: Content,
        documents: Sequence[str] | None,
        side: Side,
        tenant: str | None,
        metadata: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> _Plan:
        started = time.perf_counter()
        messages: Sequence[Mapping[str, Any]] | None = None
        if isinstance(content, str):
            for given, name in ((documents, "documents"), (fields, "fields")):
                if given:
                    raise InvalidInputError(f"{name} can only accompany a message list")
            parts = text_parts(content, side)
        elif isinstance(content, Sequence):
            messages = cast("Sequence[Mapping[str, Any]]", content)
            parts = message_parts(messages, documents)
            if fields is not None:
                parts.extend(field_parts(fields))
        else:
            raise InvalidInputError(
                f"content must be a string or a list of messages, got {type(content).__name__}"
            )
        folded = {p.text: view for p in parts if p.text and (view := fold(p.text)) is not None}
        encoded = {}
        for text in {p.text for p in parts if p.text}:
            variants = _encoded_in_original(text, folded.get(text))
            if variants:
                encoded[text] = variants
        jobs, skipped = [], []
        for name, settings in self.policy.detectors.items():
            detector = self._detectors.get(name)
            if detector is None:
                skipped.append(DetectorReport(name, RunStatus.SKIPPED, reason="disabled by policy"))
                continue
            if not (settings.sides or detector.sides).covers(side):
                skipped.append(
                    DetectorReport(name, RunStatus.SKIPPED, reason=f"not an {side.value} detector")
                )
                continue
            timeout = self.policy.timeout_for(name)
            extra = dict(metadata or {})
            jobs.append(Job(name, detector, parts, timeout, side, tenant, extra, folded, encoded))
        return _Plan(side, parts, jobs, skipped, messages, bool(documents), fields, started)

    def _assemble(self, plan: _Plan, outcomes: list[Outcome]) -> Verdict:
        actions: list[Action] = []
        findings: list[Finding] = []
        reports: list[DetectorReport] = []
        to_redact: dict[str, list[RedactionCandidate]] = defaultdict(list)
        for outcome in outcomes:
            settings = self.policy.detectors[outcome.name]
            if outcome.status is not RunStatus.OK:
                if settings.on_error is OnError.BLOCK:
                    actions.append(Action.BLOCK)
                reports.append(outcome.report(0))
                continue
            kept = 0
            for finding in outcome.findings:
                if finding.score < settings.threshold:
                    continue
                action = settings.action_for(finding.kind)
                finding = dataclasses.replace(finding, action=action)
                findings.append(finding)
                actions.append(action)
                kept += 1
                if action.severity >= Action.REDACT.severity and finding.location:
                    to_redact[finding.location].append(
                        RedactionCandidate(finding, action, settings.redaction)
                    )
            reports.append(outcome.report(kept))
        reports.extend(plan.skipped)
        media = self.policy.media
        for part in plan.parts:
            if part.kind is PartKind.MEDIA:  # unread by any detector: say so, act per policy
                findings.append(
                    Finding(MEDIA_DETECTOR, UNSCANNED_MEDIA, 0, 0, 1.0, "", part.location, media)
                )
                actions.append(media)

        # Placeholders already in any text (surrogates included) stay unique.
        texts = (p.text for p in plan.parts) if to_redact else ()
        book = PlaceholderBook.for_texts(texts)
        sanitized = {
            part.location: apply_regions(part.text, merge_regions(to_redact[part.location]), book)
            for part in plan.parts
            if part.location in to_redact
        }
        verdict_fields: dict[str, Any] = {}
        if plan.messages is None:
            verdict_fields["sanitized_text"] = sanitized.get("text", plan.parts[0].text)
        else:
            replacements = {
                p.path: sanitized[p.location] for p in plan.parts if p.location in sanitized
            }
            verdict_fields["sanitized_messages"] = rebuild_messages(plan.messages, replacements)
            if plan.has_documents:
                verdict_fields["sanitized_documents"] = [
                    sanitized.get(p.location, p.text)
                    for p in plan.parts
                    if p.path[:1] == ("documents",)
                ]
            if plan.fields is not None:
                verdict_fields["sanitized_fields"] = rebuild_fields(plan.fields, replacements)
        findings.sort(key=lambda f: (f.location or "", f.start, f.end))
        return Verdict(
            action=Action.most_severe(actions),
            side=plan.side,
            findings=tuple(findings),
            reports=tuple(reports),
            duration_ms=(time.perf_counter() - plan.started) * 1000,
            **verdict_fields,
        )


class StagedCheck:
    """An input check whose flag-only layers may still be running."""

    def __init__(
        self, shield: Shield, plan: _Plan, outcomes: list[Outcome], late: Launched
    ) -> None:
        self._shield, self._plan, self._outcomes, self._late = shield, plan, outcomes, late
        self.gate = shield._assemble(plan, outcomes)
        self._final: Verdict | None = None

    @property
    def settled(self) -> bool:
        return self._final is not None

    async def final(self) -> Verdict:
        """The complete verdict, the same as ``acheck_input`` would give. It
        may only add flags; should it differ from the gate in anything the
        request already went out with, it blocks (fail closed)."""
        if self._final is not None:
            return self._final
        if not self._late.jobs:  # nothing was deferred: the gate is the verdict
            self._final = self.gate
            return self.gate
        done = {outcome.name: outcome for outcome in await collect(self._late)}
        for outcome in done.values():
            if outcome.status is RunStatus.OK:
                outcome.reason = DEFERRED_NOTE
        outcomes = [done.get(outcome.name, outcome) for outcome in self._outcomes]
        final = self._shield._assemble(self._plan, outcomes)
        diverged = (final.blocked and not self.gate.blocked) or _sanitized(final) != _sanitized(
            self.gate
        )
        if diverged and not final.blocked:
            log.warning("deferred detector layer changed more than flags; blocking the answer")
            final = dataclasses.replace(final, action=Action.BLOCK)
        self._final = final
        return final


def _sanitized(verdict: Verdict) -> tuple[Any, ...]:
    return (
        verdict.sanitized_messages,
        verdict.sanitized_documents,
        verdict.sanitized_fields,
        verdict.sanitized_text,
    )


def _encoded_in_original(text: str, folded: FoldedText | None) -> list[Variant]:
    """Encoded segments of what detectors see, with original spans."""
    # The injection normalizer's decoders, imported on first use: `import
    # mantlet` loads no detector module.
    from mantlet.detectors.injection.normalize import encoded_variants

    return unfold(encoded_variants(seen_text(text, folded)), folded)
