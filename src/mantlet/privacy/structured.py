"""PII in structured data: JSON values and CSV (or Parquet) columns.

Column hints say what a column holds: an entity kind (``EMAIL_ADDRESS``: the
whole cell is that entity, no detection needed), ``scan`` (detect inside the
text, the default) or ``keep`` (leave as is, e.g. ids already anonymized).
Free-text cells are scanned in batches so the NER model runs batched.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from typing import IO, Any

from mantlet.core.folding import fold, seen_text, unfold
from mantlet.detectors.pii import PiiDetector
from mantlet.errors import ConfigError
from mantlet.privacy.anonymize import Transform, apply

SCAN, KEEP = "scan", "keep"
_BATCH = 256


class StructuredAnonymizer:
    def __init__(
        self, detector: PiiDetector, transform: Transform, *, threshold: float = 0.5
    ) -> None:
        self.detector = detector
        self.transform = transform
        self.threshold = threshold

    def texts(self, values: Sequence[str]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(values), _BATCH):
            batch = values[i : i + _BATCH]
            folds = [fold(text) for text in batch]  # fullwidth digits are still digits
            seen = [seen_text(text, folded) for text, folded in zip(batch, folds, strict=True)]
            found_all = self.detector.detect_many(seen)
            for text, folded, found in zip(batch, folds, found_all, strict=True):
                kept = [f for f in unfold(found, folded) if f.score >= self.threshold]
                out.append(apply(text, kept, self.transform))
        return out

    def cell(self, value: str, hint: str) -> str:
        if hint == KEEP or not value:
            return value
        if hint == SCAN:
            return self.texts([value])[0]
        return self.transform(hint, value)

    def json(self, data: Any, hints: Mapping[str, str] | None = None) -> Any:
        """Every string value; ``hints`` key on the object key (``email``) or the
        dotted path from the root (``user.email``; list items add nothing)."""
        hints = dict(hints or {})
        strings: list[tuple[list[Any] | dict[str, Any], Any, str]] = []

        def walk(node: Any, path: str) -> Any:
            if isinstance(node, dict):
                copy: dict[str, Any] = {}
                for key, value in node.items():
                    child = f"{path}.{key}" if path else str(key)
                    hint = hints.get(child, hints.get(str(key), SCAN))
                    if isinstance(value, str):
                        copy[key] = value
                        if hint != KEEP:
                            strings.append((copy, key, hint))
                    else:
                        copy[key] = walk(value, child)
                return copy
            if isinstance(node, list):
                items: list[Any] = []
                for value in node:
                    items.append(value if isinstance(value, str) else walk(value, path))
                    if isinstance(value, str):
                        strings.append((items, len(items) - 1, hints.get(path, SCAN)))
                return items
            return node

        if isinstance(data, str):
            return self.texts([data])[0]
        result = walk(data, "")
        scan = [(c, k) for c, k, h in strings if h == SCAN]
        for (container, key), text in zip(
            scan, self.texts([container[key] for container, key in scan]), strict=True
        ):
            container[key] = text
        for container, key, hint in strings:
            if hint != SCAN:
                container[key] = self.transform(hint, container[key])
        return result

    def csv(self, source: IO[str], target: IO[str], hints: Mapping[str, str] | None = None) -> int:
        """Rewrites a CSV with a header row; returns the number of data rows."""
        hints = dict(hints or {})
        reader = csv.reader(source)
        header = next(reader, None)
        if header is None:
            return 0
        unknown = sorted(set(hints) - set(header))
        if unknown:
            raise ConfigError(f"column hints name unknown columns: {unknown}")
        rows = list(reader)
        columns = [hints.get(name, SCAN) for name in header]
        for index, hint in enumerate(columns):
            values = [row[index] if index < len(row) else "" for row in rows]
            if hint == SCAN:
                values = self.texts(values)
            elif hint != KEEP:
                values = [self.transform(hint, v) if v else v for v in values]
            for row, value in zip(rows, values, strict=True):
                if index < len(row):
                    row[index] = value
        writer = csv.writer(target, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return len(rows)

    def parquet(self, source: str, target: str, hints: Mapping[str, str] | None = None) -> int:
        """String columns of a Parquet file (needs pyarrow)."""
        try:
            import pyarrow as pa  # type: ignore[import-not-found, import-untyped, unused-ignore]
            import pyarrow.parquet as pq  # type: ignore[import-not-found, import-untyped, unused-ignore]
        except ImportError:
            raise ConfigError("Parquet needs pyarrow (pip install pyarrow)") from None
        hints = dict(hints or {})
        table = pq.read_table(source)
        for name in table.column_names:
            hint = hints.get(name, SCAN)
            column = table.column(name)
            if hint == KEEP or not pa.types.is_string(column.type):
                continue
            values = column.to_pylist()
            present = [v for v in values if isinstance(v, str)]
            done = iter(
                self.texts(present) if hint == SCAN else [self.transform(hint, v) for v in present]
            )
            new = [next(done) if isinstance(v, str) else v for v in values]
            table = table.set_column(
                table.column_names.index(name), name, pa.array(new, pa.string())
            )
        pq.write_table(table, target)
        return int(table.num_rows)
