"""``mantlet eval``: score a detector on the user's own labelled JSONL."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mantlet.cli._common import counting_progress, guarded, print_json, stdout
from mantlet.cli.scan import SideOption
from mantlet.core.types import PartKind, Side
from mantlet.errors import ConfigError
from mantlet.evaluation.dataset import load_rows
from mantlet.evaluation.evaluate import evaluate
from mantlet.evaluation.labels import defaults_for
from mantlet.policy.loader import DEFAULT_PROFILE, load_policy


class PartOption(StrEnum):
    prompt = "prompt"
    document = "document"
    tool_output = "tool_output"
    system = "system"
    completion = "completion"


_CLASSIFICATION = ("n", "precision", "recall", "f1", "balanced_accuracy", "fpr")


@guarded
def evaluate_command(
    detector: Annotated[str, typer.Argument(help="Detector name, e.g. secrets.")],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="JSONL: {text,label} and/or {text,spans}.")
    ],
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="Profile or policy file giving options.")
    ] = DEFAULT_PROFILE,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Override the policy threshold.")
    ] = None,
    side: Annotated[SideOption, typer.Option(help="Scan rows as prompts or answers.")] = (
        SideOption.input
    ),
    part: Annotated[
        PartOption | None,
        typer.Option(help="Scan rows as this kind of part (e.g. document: tool output, RAG)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N rows.")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Detector option KEY=VALUE (VALUE as JSON, else a string); repeatable. "
            "pii defaults to ner=en (names, places, organizations); -o ner=null turns it off.",
        ),
    ] = None,
    label_map: Annotated[
        list[str] | None,
        typer.Option(
            "--label-map",
            help="Rename a gold label FROM=TO before matching; repeatable. pii maps "
            "GPE/LOC/FAC to LOCATION, PER to PERSON, ORG to ORGANIZATION by default.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Measure a detector on your labelled JSONL.

    Label rows give precision, recall, F1, balanced accuracy, FPR and latency;
    span rows give per-entity precision/recall/F1 with exact and overlap matching.
    """
    rows = load_rows(data, limit)
    loaded = load_policy(policy)
    default_options, aliases = defaults_for(detector)
    settings = loaded.detectors.get(detector)
    options = {
        k: v for k, v in default_options.items() if not settings or k not in settings.options
    }
    options.update(_pairs(option or [], "--option", as_json_value=True))
    aliases.update(_pairs(label_map or [], "--label-map", as_json_value=False))
    with counting_progress(hidden=as_json) as progress:
        task = progress.add_task(f"eval {detector}", total=len(rows))
        report = evaluate(
            detector,
            rows,
            loaded,
            side=Side(side.value),
            part=PartKind(part.value) if part else None,
            threshold=threshold,
            on_row=lambda: progress.advance(task),
            options=options,
            label_aliases=aliases,
        )
    report["data"] = str(data)
    if as_json:
        print_json(report)
    else:
        _render(report)


def _pairs(items: list[str], flag: str, *, as_json_value: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        if as_json_value:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
        else:
            out[key] = value
    return out


def _render(report: dict[str, Any]) -> None:
    stdout.print(
        f"[bold]{report['detector']}[/] on {report['data']} "
        f"(threshold {report['threshold']:.2f}, errors {report['errors']})"
    )
    if "precision" in report:
        table = Table(*_CLASSIFICATION, "p50 ms", "p99 ms")
        table.add_row(
            str(report["n"]),
            *(f"{report[k]:.3f}" for k in _CLASSIFICATION[1:]),
            f"{report['latency_ms_p50']:.2f}",
            f"{report['latency_ms_p99']:.2f}",
        )
        stdout.print(table)
    if "spans" in report:
        for mode in ("exact", "overlap"):
            agnostic = report["spans"]["label_agnostic"][mode]["micro"]
            stdout.print(
                f"spans, {mode} match, any label: precision {agnostic['precision']:.3f} "
                f"recall {agnostic['recall']:.3f} F1 {agnostic['f1']:.3f}"
            )
        table = Table("label", "precision", "recall", "F1", "tp", "fp", "fn")
        per_label = report["spans"]["by_label"]["overlap"]["per_label"]
        for label, scores in per_label.items():
            table.add_row(
                label,
                f"{scores['precision']:.3f}",
                f"{scores['recall']:.3f}",
                f"{scores['f1']:.3f}",
                str(scores["tp"]),
                str(scores["fp"]),
                str(scores["fn"]),
            )
        stdout.print("per label (overlap match):")
        stdout.print(table)
    stdout.print(f"throughput: {report['throughput_chars_per_s'] / 1e6:.2f} M chars/s")
