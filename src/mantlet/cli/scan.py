"""``mantlet scan``: check one text or message list against a policy."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mantlet.cli._common import guarded, print_json, read_text, stdout
from mantlet.core.types import Action, Verdict
from mantlet.errors import InvalidInputError
from mantlet.pipeline.shield import Shield
from mantlet.policy.loader import DEFAULT_PROFILE


class SideOption(StrEnum):
    input = "input"
    output = "output"


class FailOn(StrEnum):
    never = "never"
    flag = "flag"
    redact = "redact"
    block = "block"


def _parse_messages(raw: str) -> tuple[list[Any], list[str] | None, dict[str, Any]]:
    """A message list, or a request object: its ``messages``, its ``documents``
    and every other field but the model name (tools, response format, ...),
    which is scanned too."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"--messages input is not JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    fields: dict[str, Any] = {}
    if isinstance(data, dict):
        messages, documents = data.get("messages"), data.get("documents")
        skip = ("messages", "documents", "model", "stream")
        fields = {k: v for k, v in data.items() if k not in skip}
    else:
        messages, documents = data, None
    if not isinstance(messages, list):
        raise InvalidInputError(
            "--messages expects a JSON list or an object with a 'messages' list"
        )
    if documents is not None and not isinstance(documents, list):
        raise InvalidInputError("'documents' must be a list of strings")
    return messages, documents, fields


def _render(verdict: Verdict) -> None:
    colour = {"allow": "green", "flag": "yellow", "redact": "yellow", "block": "red"}
    stdout.print(
        f"verdict: [bold {colour[verdict.action.value]}]{verdict.action.value}[/] "
        f"({len(verdict.findings)} finding(s), {verdict.duration_ms:.1f} ms)"
    )
    if verdict.findings:
        table = Table("detector", "kind", "location", "span", "score", "action")
        for f in verdict.findings:
            table.add_row(
                f.detector,
                f.kind,
                f.location or "",
                f"{f.start}-{f.end}",
                f"{f.score:.2f}",
                f.action.value if f.action else "",
            )
        stdout.print(table)
    runs = Table("detector", "status", "ms", "note")
    for r in verdict.reports:
        runs.add_row(r.detector, r.status.value, f"{r.duration_ms:.2f}", r.reason)
    stdout.print(runs)
    if verdict.action is not Action.REDACT:
        return
    stdout.print("sanitized:", highlight=False)
    if verdict.sanitized_text is not None:
        stdout.print(verdict.sanitized_text, markup=False, highlight=False)
        return
    sanitized = {
        "messages": verdict.sanitized_messages,
        "documents": verdict.sanitized_documents,
        **(verdict.sanitized_fields or {}),
    }
    shown = {k: v for k, v in sanitized.items() if v is not None}
    stdout.print(json.dumps(shown, ensure_ascii=False, indent=2), markup=False, highlight=False)


@guarded
def scan(
    text: Annotated[
        str | None, typer.Argument(help="Text to scan; '-' or nothing reads stdin.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the text from a file.")
    ] = None,
    side: Annotated[
        SideOption, typer.Option(help="Scan as a prompt (input) or an answer (output).")
    ] = SideOption.input,
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="Profile name or policy YAML path.")
    ] = DEFAULT_PROFILE,
    messages: Annotated[
        bool,
        typer.Option(
            "--messages",
            help="Input is a JSON message list or a request object (messages, tools, ...).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the verdict as one JSON object.")
    ] = False,
    fail_on: Annotated[
        FailOn, typer.Option(help="Exit 1 when the verdict is at least this severe.")
    ] = FailOn.never,
) -> None:
    """Scan text, a file or stdin and print the verdict."""
    raw = read_text(text, file)
    with Shield.from_policy(policy) as shield:
        if messages:
            msgs, docs, fields = _parse_messages(raw)
            if side is SideOption.input:
                verdict = shield.check_input(msgs, documents=docs, fields=fields or None)
            elif docs is not None or fields:
                raise InvalidInputError("--side output scans a message list only")
            else:
                verdict = shield.check_output(msgs)
        elif side is SideOption.input:
            verdict = shield.check_input(raw)
        else:
            verdict = shield.check_output(raw)
    if as_json:
        print_json(verdict.to_dict())
    else:
        _render(verdict)
    if fail_on is not FailOn.never and verdict.action.severity >= Action(fail_on.value).severity:
        raise typer.Exit(1)
