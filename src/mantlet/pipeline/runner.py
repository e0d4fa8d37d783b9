"""Running detectors concurrently, each under its own deadline.

Detectors are synchronous (most are regex or ONNX calls that release the GIL
or finish in microseconds), so each runs in a worker thread; the sync and the
async entry points share the same executor and differ only in how they wait.
A detector that overruns its deadline is reported as TIMEOUT; its thread
cannot be killed, but its late result is discarded and the verdict does not
wait for it.

Light detectors (``light = True``: regexes and checksums) on short texts run
on the caller's thread instead: they finish in tens of microseconds, less
than a thread hop costs, and the size bound keeps them from holding up the
event loop.

GIL-bound detectors (``gil_bound = True``: pure Python or small numpy work
that never releases the interpreter lock) gain no parallelism from a thread,
only its hops, so on texts up to ``GIL_BOUND_INLINE_CHARS`` they run on the
caller's thread too: with the lexical injection model there instead of in a
worker thread, the gateway served 24-48 % more requests per second at
concurrency 16 (bench/results/gateway_overhead.md, run 21). Longer texts
keep their worker thread, so the event loop is never held for long.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mantlet.core.folding import FoldedText, seen_text, unfold
from mantlet.core.types import (
    Detector,
    DetectorReport,
    Finding,
    PartKind,
    RunStatus,
    ScanContext,
    Side,
)
from mantlet.errors import MantletError
from mantlet.pipeline.parts import TextPart

if TYPE_CHECKING:
    from mantlet.detectors.injection.normalize import Variant

log = logging.getLogger(__name__)
# Light detectors run inline while the job's text stays under this size.
INLINE_CHARS = 8192
# GIL-bound ones up to this size: about 4 ms of the lexical injection model.
# Longer texts stay in a thread, where a slow upstream's wait hides them.
GIL_BOUND_INLINE_CHARS = 2048


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    detector: Detector
    parts: Sequence[TextPart]
    timeout_s: float
    side: Side
    tenant: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Folded views of the parts' texts that have one, and the encoded segments
    # (spans in the original) of those that have some; computed once per check.
    folded: Mapping[str, FoldedText] = field(default_factory=dict)
    encoded: Mapping[str, Sequence[Variant]] = field(default_factory=dict)


@dataclass(slots=True)
class Outcome:
    name: str
    status: RunStatus
    duration_ms: float
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""

    def report(self, kept: int) -> DetectorReport:
        return DetectorReport(self.name, self.status, self.duration_ms, kept, self.reason)


def _safe_reason(exc: BaseException) -> str:
    # Exception messages from third-party code may quote the scanned text, so
    # only Mantlet's own messages (which never do) are passed through.
    if isinstance(exc, MantletError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def _checked(findings: object, name: str, text: str) -> list[Finding]:
    if not isinstance(findings, list) or not all(isinstance(f, Finding) for f in findings):
        raise MantletError(f"detector {name!r} returned something other than list[Finding]")
    for finding in findings:
        if finding.end > len(text):
            raise MantletError(f"detector {name!r} returned a span beyond the text")
    return findings


def _scan(
    detector: Detector,
    name: str,
    text: str,
    context: ScanContext,
    folded: FoldedText | None,
    encoded: Sequence[Variant],
) -> list[Finding]:
    """One detector on one text, folded (``mantlet.core.folding``) unless the
    detector reads the original itself; findings come back in the original's
    offsets. What base64, hex or percent-encoded segments decode to is scanned
    too: a finding there covers the whole encoded segment."""
    if getattr(detector, "reads_original", False):
        return _checked(detector.detect(text, context), name, text)
    seen = seen_text(text, folded)
    found = unfold(_checked(detector.detect(seen, context), name, seen), folded)
    for variant in encoded:
        for inner in _checked(detector.detect(variant.text, context), name, variant.text):
            detail = f"{inner.detail} (in {variant.kind})" if inner.detail else f"in {variant.kind}"
            found.append(
                dataclasses.replace(inner, start=variant.start, end=variant.end, detail=detail)
            )
    return found


def run_job(job: Job) -> Outcome:
    """Runs one detector over all its parts; never raises."""
    started = time.perf_counter()
    findings: list[Finding] = []
    # A request repeats itself (tool schemas are full of "string" and
    # "object"; chat clients resend earlier turns): a text seen in the same
    # context is scanned once. Findings depend on nothing else.
    seen: dict[tuple[str, PartKind, str | None], list[Finding]] = {}
    try:
        for part in job.parts:
            if not part.text:
                continue
            key = (part.text, part.kind, part.role)
            if key not in seen:
                context = ScanContext(
                    side=job.side,
                    part=part.kind,
                    role=part.role,
                    tenant=job.tenant,
                    metadata=job.metadata,
                )
                folded, encoded = job.folded.get(part.text), job.encoded.get(part.text, ())
                seen[key] = _scan(job.detector, job.name, part.text, context, folded, encoded)
            if seen[key]:
                findings.extend(
                    dataclasses.replace(f, detector=job.name, location=part.location)
                    for f in seen[key]
                )
    except Exception as exc:  # noqa: BLE001 - any failure must become a recorded verdict
        log.warning("detector %s failed: %s", job.name, type(exc).__name__)
        elapsed = (time.perf_counter() - started) * 1000
        return Outcome(job.name, RunStatus.ERROR, elapsed, reason=_safe_reason(exc))
    elapsed = (time.perf_counter() - started) * 1000
    return Outcome(job.name, RunStatus.OK, elapsed, findings)


def _timed_out(job: Job) -> Outcome:
    log.warning("detector %s timed out after %.0f ms", job.name, job.timeout_s * 1000)
    return Outcome(
        job.name,
        RunStatus.TIMEOUT,
        job.timeout_s * 1000,
        reason=f"exceeded {job.timeout_s * 1000:.0f} ms",
    )


def runs_inline(job: Job) -> bool:
    """Cheaper here than in a worker thread: a light or a GIL-bound detector
    on a text short enough."""
    if getattr(job.detector, "light", False):
        limit = INLINE_CHARS
    elif getattr(job.detector, "gil_bound", False):
        limit = GIL_BOUND_INLINE_CHARS
    else:
        return False
    return sum(len(part.text) for part in job.parts) <= limit


def run_sync(executor: concurrent.futures.Executor, jobs: Sequence[Job]) -> list[Outcome]:
    started = time.monotonic()
    futures = {
        i: executor.submit(run_job, job) for i, job in enumerate(jobs) if not runs_inline(job)
    }
    outcomes = [run_job(job) if i not in futures else None for i, job in enumerate(jobs)]
    for i, future in futures.items():
        job = jobs[i]
        remaining = max(0.0, started + job.timeout_s - time.monotonic())
        try:
            outcomes[i] = future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            future.cancel()
            outcomes[i] = _timed_out(job)
    return [outcome for outcome in outcomes if outcome is not None]


@dataclass(slots=True)
class Launched:
    """Jobs already running in worker threads; ``collect`` waits for them,
    each deadline counted from the launch, not from the wait."""

    jobs: list[Job]
    futures: list[concurrent.futures.Future[Outcome]]
    started: float


def launch(executor: concurrent.futures.Executor, jobs: Sequence[Job]) -> Launched:
    futures = [executor.submit(run_job, job) for job in jobs]
    return Launched(list(jobs), futures, time.monotonic())


async def collect(launched: Launched) -> list[Outcome]:
    async def wait(job: Job, future: concurrent.futures.Future[Outcome]) -> Outcome:
        if future.done() and not future.cancelled():  # finished while the caller was busy
            return future.result()
        remaining = max(0.0, launched.started + job.timeout_s - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), remaining)
        except TimeoutError:
            future.cancel()
            return _timed_out(job)

    if not launched.jobs:
        return []
    pairs = zip(launched.jobs, launched.futures, strict=True)
    return list(await asyncio.gather(*(wait(job, future) for job, future in pairs)))


async def run_async(executor: concurrent.futures.Executor, jobs: Sequence[Job]) -> list[Outcome]:
    outcomes, _ = await run_gate(executor, jobs, ())
    return outcomes


async def run_gate(
    executor: concurrent.futures.Executor, jobs: Sequence[Job], later: Sequence[Job]
) -> tuple[list[Outcome], Launched]:
    """Runs ``jobs`` to completion and launches ``later`` without waiting.

    ``later`` starts after the inline jobs: on a small CPU a model thread
    starting first would make them queue for the GIL behind its tokenizing."""
    inline = [runs_inline(job) for job in jobs]
    threaded = [i for i, here in enumerate(inline) if not here]
    launched = launch(executor, [jobs[i] for i in threaded])
    outcomes = [run_job(job) if here else None for job, here in zip(jobs, inline, strict=True)]
    deferred = launch(executor, later)
    for i, outcome in zip(threaded, await collect(launched), strict=True):
        outcomes[i] = outcome
    return [outcome for outcome in outcomes if outcome is not None], deferred
