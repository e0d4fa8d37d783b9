"""``mantlet redteam``: attack an OpenAI-compatible endpoint (optionally a
second one, e.g. the same model behind Mantlet) and report attack success
rates per OWASP LLM 2025 id and MITRE ATLAS technique."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mantlet import __version__
from mantlet.cli._common import counting_progress, guarded, print_json, stdout
from mantlet.errors import ConfigError


class _ProviderChat:
    """An in-process gateway provider (the embedded local model) as a ChatModel."""

    def __init__(self, provider: Any, label: str) -> None:
        self._provider = provider
        self.label = label

    async def chat(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int, temperature: float
    ) -> Any:
        from mantlet.errors import MantletError
        from mantlet.redteam.target import Reply

        request = {
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        try:
            answer = await self._provider.send("chat/completions", request)
        except MantletError as exc:
            return Reply("error", detail=exc.diagnostics())
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        return Reply(
            "ok",
            choice["message"].get("content") or "",
            choice.get("finish_reason"),
            usage.get("completion_tokens"),
        )

    async def aclose(self) -> None:
        await self._provider.aclose()


def _local_model(label: str) -> _ProviderChat:
    # The gateway's embedded SmolLM2 provider, loaded in this process (sha256-checked).
    from mantlet.gateway.providers.local_gguf import LocalGGUFProvider
    from mantlet.gateway.settings import UpstreamSettings

    return _ProviderChat(LocalGGUFProvider(UpstreamSettings(name=label, kind="local")), label)


@guarded
def redteam(
    target: Annotated[str, typer.Option(help="Base URL of the OpenAI-compatible API (…/v1).")],
    model: Annotated[str, typer.Option(help="Model name to request.")],
    out: Annotated[Path, typer.Option(help="Output directory (report, attempts, seeds).")],
    api_key: Annotated[
        str | None,
        typer.Option(envvar="MANTLET_REDTEAM_API_KEY", help="Bearer key for --target."),
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(help="Another base URL to attack with the same probes (repeatable)."),
    ] = None,
    compare_api_key: Annotated[
        str | None,
        typer.Option(
            envvar="MANTLET_REDTEAM_COMPARE_API_KEY", help="Key for --compare (default --api-key)."
        ),
    ] = None,
    compare_model: Annotated[
        str | None, typer.Option(help="Model for --compare (default --model).")
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option(min=1, help="Run at most N attempts (all categories covered).")
    ] = None,
    probes: Annotated[
        list[Path] | None, typer.Option("--probes", help="Probe YAML file(s) instead of built-ins.")
    ] = None,
    converters: Annotated[
        str | None, typer.Option(help="Comma-separated converters (default all; '' for none).")
    ] = None,
    rounds: Annotated[
        int, typer.Option(min=0, max=10, help="Attacker refinement rounds per failed attempt.")
    ] = 2,
    attacker_url: Annotated[
        str | None,
        typer.Option(help="Attacker model API base URL (default: embedded local model)."),
    ] = None,
    attacker_model: Annotated[str, typer.Option(help="Attacker model name.")] = "smollm2",
    attacker_api_key: Annotated[
        str | None, typer.Option(envvar="MANTLET_REDTEAM_ATTACKER_API_KEY", help="Attacker key.")
    ] = None,
    judge_url: Annotated[
        str | None, typer.Option(help="Enable the LLM judge: its API base URL.")
    ] = None,
    judge_model: Annotated[str, typer.Option(help="LLM judge model name.")] = "smollm2",
    judge_api_key: Annotated[
        str | None, typer.Option(envvar="MANTLET_REDTEAM_JUDGE_API_KEY", help="LLM judge key.")
    ] = None,
    policy: Annotated[
        str, typer.Option(help="Policy for the policy-violation judge (profile or file).")
    ] = "balanced",
    system_prompt: Annotated[
        Path | None,
        typer.Option(
            help="System prompt template ({api_key}, {email}, {canary}, {canary_sentence})."
        ),
    ] = None,
    no_system_prompt: Annotated[
        bool, typer.Option("--no-system-prompt", help="Send no system prompt.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight per target.")] = 4,
    rate: Annotated[
        float | None, typer.Option(min=0.01, help="Max requests per second per target.")
    ] = None,
    retries: Annotated[int, typer.Option(min=0, max=10, help="Retries on 429/5xx/network.")] = 2,
    max_requests: Annotated[
        int | None, typer.Option(min=1, help="Request budget per target (then stop).")
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=16, help="max_tokens per answer.")] = 200,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 120.0,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard earlier attempts in --out instead of resuming.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Red-team an OpenAI-compatible endpoint: probes x converters, an attacker
    model refining failures, judges, and a report (DIR/report.json, DIR/report.html).

    Reruns with the same --out resume: finished attempts are kept in
    DIR/attempts-*.jsonl and skipped.
    """
    from mantlet.redteam import (
        CONVERTERS,
        Attacker,
        HttpChatModel,
        RequestBudget,
        RunOptions,
        TargetRun,
        expand,
        load_probes,
        run_session,
    )
    from mantlet.redteam.runner import DEFAULT_SYSTEM_PROMPT, Seeds

    names = None
    if converters is not None:
        names = [c.strip() for c in converters.split(",") if c.strip()]
        unknown = sorted(set(names) - set(CONVERTERS))
        if unknown:
            raise ConfigError(f"unknown converter(s) {unknown}; known: {', '.join(CONVERTERS)}")
    attempts = expand(load_probes(probes), names, max_attempts)
    if fresh and out.exists():
        for name in ("seeds.json", "report.json", "report.html"):
            (out / name).unlink(missing_ok=True)
        for path in out.glob("attempts-*.jsonl"):
            path.unlink()
    template: str | None = DEFAULT_SYSTEM_PROMPT
    if no_system_prompt:
        template = None
    elif system_prompt is not None:
        try:
            template = system_prompt.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {system_prompt}: {exc.strerror}") from None
    out.mkdir(parents=True, exist_ok=True)
    seeds = Seeds.load_or_create(out, template)

    def http(url: str, key: str | None, name: str) -> HttpChatModel:
        return HttpChatModel(
            url,
            name,
            api_key=key,
            label=f"{url.rstrip('/')} ({name})",
            concurrency=concurrency,
            rate_per_second=rate,
            retries=retries,
            timeout_s=timeout,
            budget=RequestBudget(max_requests),
        )

    targets = [TargetRun("target", http(target, api_key, model), model)]
    for index, url in enumerate(compare or []):
        slot = "compare" if index == 0 else f"compare{index + 1}"
        name = compare_model or model
        targets.append(TargetRun(slot, http(url, compare_api_key or api_key, name), name))
    attacker = None
    if rounds:
        attacker_chat: Any = (
            http(attacker_url, attacker_api_key, attacker_model)
            if attacker_url
            else _local_model("attacker")
        )
        attacker = Attacker(attacker_chat)
    judge = http(judge_url, judge_api_key, judge_model) if judge_url else None
    options = RunOptions(max_tokens=max_tokens, rounds=rounds)
    report_options = {
        "targets": [t.model.label for t in targets],
        "attempts": len(attempts),
        "converters": names if names is not None else list(CONVERTERS),
        "rounds": rounds,
        "attacker": attacker.label if attacker else None,
        "llm_judge": judge.label if judge else None,
        "policy": policy,
        "max_tokens": max_tokens,
        "max_requests": max_requests,
    }

    with counting_progress(hidden=as_json) as progress:

        def progress_for(slot: str, total: int) -> Callable[[int, int], None]:
            task = progress.add_task(f"redteam {slot}", total=total)
            return lambda done, _total: progress.update(task, completed=done)

        async def main() -> dict[str, Any]:
            try:
                return await run_session(
                    targets,
                    attempts,
                    out,
                    seeds=seeds,
                    options=options,
                    attacker=attacker,
                    judge_model=judge,
                    policy=policy,
                    report_options=report_options,
                    progress=progress_for,
                    version=__version__,
                )
            finally:
                for t in targets:
                    await t.model.aclose()
                if attacker is not None:
                    await attacker.model.aclose()
                if judge is not None:
                    await judge.aclose()

        report = asyncio.run(main())
    summary = _summary(report, out)
    if as_json:
        print_json(summary)
    else:
        _render(report, out)


def _summary(report: dict[str, Any], out: Path) -> dict[str, Any]:
    return {
        "report_json": str(out / "report.json"),
        "report_html": str(out / "report.html"),
        "targets": [
            {
                "slot": s["slot"],
                "label": s["label"],
                "attempts": s["attempts"],
                "overall": s["overall"],
                "overall_without_attacker": s["overall_without_attacker"],
                "by_owasp": {k: {"asr": v["asr"], "n": v["n"]} for k, v in s["by_owasp"].items()},
            }
            for s in report["targets"]
        ],
    }


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry or not entry["n"]:
        return "-"
    low, high = entry["ci95"]
    return (
        f"{entry['successes']}/{entry['n']} {100 * entry['asr']:.0f}% "
        f"[{100 * low:.0f}-{100 * high:.0f}]"
    )


def _render(report: dict[str, Any], out: Path) -> None:
    sections = report["targets"]
    for dim, title in (("by_category", "category"), ("by_owasp", "OWASP LLM 2025")):
        table = Table(title, *(s["slot"] for s in sections), title=f"ASR by {title} (95% CI)")
        for key in sorted({k for s in sections for k in s[dim]}):
            table.add_row(key, *(_fmt(s[dim].get(key)) for s in sections))
        table.add_row("overall", *(_fmt(s["overall"]) for s in sections))
        stdout.print(table)
    for s in sections:
        a = s["attempts"]
        stdout.print(
            f"{s['slot']}: {s['label']}: {a['completed']}/{a['planned']} attempts, "
            f"{a['blocked']} blocked, {a['errored']} errored, {a['skipped_budget']} skipped "
            f"(budget); without attacker {_fmt(s['overall_without_attacker'])}"
        )
    width = shutil.get_terminal_size().columns
    stdout.print(f"report: {out / 'report.html'} and {out / 'report.json'}"[:width])
