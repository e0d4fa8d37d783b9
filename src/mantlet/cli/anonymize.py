"""``mantlet anonymize``: irreversible anonymization of text, JSON, JSONL, CSV
or Parquet files (data at rest). Nothing is kept that could restore a value."""

from __future__ import annotations

import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from mantlet.cli._common import guarded, print_json
from mantlet.detectors._options import parse_options
from mantlet.detectors.pii import PiiDetector, PiiOptions
from mantlet.errors import ConfigError, InvalidInputError
from mantlet.privacy import Method, StructuredAnonymizer, load_or_create_key, transform_for


class MethodOption(StrEnum):
    mask = "mask"
    hash = "hash"
    format = "format"  # type: ignore[assignment]  # shadows str.format; the CLI spelling wins


_FORMATS = ("text", "json", "jsonl", "csv", "parquet")


@guarded
def anonymize(
    source: Annotated[
        Path, typer.Argument(help="Input file (.txt, .json, .jsonl, .csv, .parquet).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the result.")],
    method: Annotated[
        MethodOption,
        typer.Option(help="mask: ****; hash: HMAC token (joins still work); format: same shape."),
    ] = MethodOption.hash,
    key_file: Annotated[
        Path | None,
        typer.Option(help="Tenant key for hash/format (created 0600 if missing)."),
    ] = None,
    hint: Annotated[
        list[str] | None,
        typer.Option(
            help="COLUMN=KIND (whole cell is that entity), COLUMN=keep or COLUMN=scan; "
            "for JSON the key or dotted path. Repeatable."
        ),
    ] = None,
    ner: Annotated[
        str | None,
        typer.Option(
            help="NER backend for names/places/orgs: en (a CRF, built in) or en_spacy "
            "(needs mantlet[pii])."
        ),
    ] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Anonymize a file irreversibly: detected PII is masked, replaced by a keyed
    token, or replaced by a value of the same shape."""
    kind = source.suffix.lower().lstrip(".") or "text"
    kind = "text" if kind == "txt" else kind
    if kind not in _FORMATS:
        raise InvalidInputError(f"unsupported input {source.suffix!r}; use one of {_FORMATS}")
    chosen = Method(method.value)
    if chosen is not Method.MASK and key_file is None:
        raise ConfigError(f"--method {chosen.value} needs --key-file (a tenant key)")
    key = load_or_create_key(key_file) if key_file is not None else None
    hints = {}
    for item in hint or []:
        column, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--hint expects COLUMN=KIND, got {item!r}")
        hints[column] = value
    anonymizer = StructuredAnonymizer(
        PiiDetector(parse_options(PiiOptions, {"ner": ner}, "pii")),
        transform_for(chosen, key),
        threshold=threshold,
    )
    records = _run(anonymizer, kind, source, output, hints)
    summary: dict[str, Any] = {
        "input": str(source),
        "output": str(output),
        "format": kind,
        "method": chosen.value,
        "records": records,
    }
    if as_json:
        print_json(summary)
    else:
        print(
            f"anonymized {records} record(s) of {source} -> {output} ({chosen.value})",
            file=sys.stderr,
        )


def _run(
    anonymizer: StructuredAnonymizer, kind: str, source: Path, output: Path, hints: dict[str, str]
) -> int:
    try:
        if kind == "parquet":
            return anonymizer.parquet(str(source), str(output), hints)
        text = source.read_text("utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read {source}: {exc.strerror}") from None
    if kind == "text":
        output.write_text(anonymizer.texts([text])[0], "utf-8")
        return 1
    if kind == "csv":
        buffer = io.StringIO()
        count = anonymizer.csv(io.StringIO(text), buffer, hints)
        output.write_text(buffer.getvalue(), "utf-8")
        return count
    try:
        if kind == "json":
            output.write_text(json.dumps(anonymizer.json(json.loads(text), hints)), "utf-8")
            return 1
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{source}: not valid JSON (line {exc.lineno})") from None
    done = [json.dumps(anonymizer.json(line, hints)) for line in lines]
    output.write_text("".join(d + "\n" for d in done), "utf-8")
    return len(done)
