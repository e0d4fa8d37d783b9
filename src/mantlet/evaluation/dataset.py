"""Reading labelled JSONL: classification rows ``{text, label}`` and span rows
``{text, spans: [{start, end, label}]}``; other fields are ignored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mantlet.errors import DataError
from mantlet.evaluation.metrics import Span


@dataclass(frozen=True, slots=True)
class Row:
    text: str
    label: int | None
    spans: tuple[Span, ...] | None


def _parse_spans(raw: object, text: str, where: str) -> tuple[Span, ...]:
    if not isinstance(raw, list):
        raise DataError(f"{where}: 'spans' must be a list")
    spans = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise DataError(f"{where}: spans[{i}] must be an object")
        start, end, label = item.get("start"), item.get("end"), item.get("label", "*")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(text)):
            raise DataError(f"{where}: spans[{i}] has invalid start/end for a text of {len(text)}")
        spans.append(Span(start, end, str(label)))
    return tuple(spans)


def _parse_label(raw: object, where: str) -> int:
    if isinstance(raw, bool | int | float) and raw in (0, 1):
        return int(raw)
    raise DataError(f"{where}: 'label' must be 0 or 1, got {raw!r}")


def load_rows(path: Path, limit: int | None = None) -> list[Row]:
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    rows: list[Row] = []
    with handle:
        for number, raw_line in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if not raw_line.strip():
                continue
            try:
                obj = json.loads(raw_line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"{where}: not valid JSON ({type(exc).__name__})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise DataError(f"{where}: each row must be an object with a string 'text'")
            text = obj["text"]
            label = _parse_label(obj["label"], where) if "label" in obj else None
            spans = _parse_spans(obj["spans"], text, where) if "spans" in obj else None
            if label is None and spans is None:
                raise DataError(f"{where}: row has neither 'label' nor 'spans'")
            rows.append(Row(text, label, spans))
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows
