"""Shared helpers: detectors validate their policy ``options`` and their
rule tables with pydantic and report problems as ``ConfigError`` naming the
option path or the table row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mantlet.errors import ConfigError

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def describe(exc: ValidationError, root: str) -> str:
    """One line per problem: ``path.to.field: message``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}" for e in exc.errors()
    )


def parse_options(model: type[OptionsT], options: Mapping[str, Any], detector: str) -> OptionsT:
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise ConfigError(
            f"invalid options for detector {detector!r}: {describe(exc, '<options>')}"
        ) from None


def parse_table(model: type[OptionsT], raw: object, where: str) -> list[OptionsT]:
    """Validate a rule table: a list of rows, each with a unique ``id``.
    Errors name the row by index and id."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of rules")
    rows = []
    for index, item in enumerate(raw):
        try:
            rows.append(model.model_validate(item))
        except ValidationError as exc:
            label = item.get("id") if isinstance(item, dict) else None
            name = f"{where}[{index}]" + (f" ({label})" if label else "")
            raise ConfigError(f"{name}: {describe(exc, '<rule>')}") from None
    ids = [getattr(row, "id", None) for row in rows]
    duplicates = sorted({str(i) for i in ids if i is not None and ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{where}: duplicate rule id(s) {duplicates}")
    return rows
