"""One red-team run end to end: seeds, attempts, one or more targets, the
judges, the attacker loop, and the report files in the output directory."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mantlet.redteam.attacker import Attacker
from mantlet.redteam.html import render_html
from mantlet.redteam.judges import (
    CanaryJudge,
    ExhaustionJudge,
    Judge,
    LLMJudge,
    MarkerJudge,
    PolicyJudge,
    RefusalJudge,
    SecretJudge,
)
from mantlet.redteam.probes import Attempt
from mantlet.redteam.report import build_report, summarize
from mantlet.redteam.runner import AttemptStore, RunOptions, Seeds, run_attempts
from mantlet.redteam.target import ChatModel

__all__ = ["TargetRun", "run_session"]


@dataclass
class TargetRun:
    """A target under test; ``slot`` names it in the report ("target", "compare")."""

    slot: str
    model: ChatModel
    model_name: str


ProgressFactory = Callable[[str, int], Callable[[int, int], None]]


async def run_session(
    targets: Sequence[TargetRun],
    attempts: Sequence[Attempt],
    out: Path,
    *,
    seeds: Seeds,
    options: RunOptions,
    attacker: Attacker | None = None,
    judge_model: ChatModel | None = None,
    policy: str = "balanced",
    report_options: dict[str, Any] | None = None,
    progress: ProgressFactory | None = None,
    version: str = "",
) -> dict[str, Any]:
    """Run every target (concurrently, same attempts and seeds) and
    write ``report.json`` and ``report.html`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    policy_judge = PolicyJudge(policy, [seeds.canary])
    judges: list[Judge] = [
        CanaryJudge(seeds.canary),
        SecretJudge(seeds.secrets),
        MarkerJudge(),
        RefusalJudge(),
        policy_judge,
        ExhaustionJudge(),
    ]
    if judge_model is not None:
        judges.append(LLMJudge(judge_model))

    async def one(target: TargetRun) -> dict[str, Any]:
        store = AttemptStore(out / f"attempts-{_slug(target.slot)}.jsonl", target.model.label)
        callback = progress(target.slot, len(attempts)) if progress else None
        records, skipped = await run_attempts(
            target.model,
            attempts,
            judges,
            seeds,
            store,
            options=options,
            attacker=attacker,
            on_progress=callback,
        )
        return summarize(
            target.slot, target.model.label, target.model_name, records, len(attempts), skipped
        )

    try:
        # Targets are independent endpoints: attack them at the same time.
        sections = list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        policy_judge.close()
    report = build_report(sections, report_options or {}, version)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    return report


def run_session_sync(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(run_session(*args, **kwargs))


def _slug(slot: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", slot.lower()).strip("-") or "target"
