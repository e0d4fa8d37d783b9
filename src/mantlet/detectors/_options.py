"""Shared helper: detectors validate their policy ``options`` with pydantic and
report problems as ``ConfigError`` naming the option path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mantlet.errors import ConfigError

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def parse_options(model: type[OptionsT], options: Mapping[str, Any], detector: str) -> OptionsT:
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<options>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid options for detector {detector!r}: {problems}") from None
