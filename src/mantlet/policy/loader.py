"""Loading policies from YAML: profile resolution, ``extends`` chains and error
messages that name the file, the YAML path and the problem."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mantlet.errors import PolicyError
from mantlet.policy.model import OnError, Policy

log = logging.getLogger(__name__)

_PROFILE_PACKAGE = "mantlet.policy.profiles"
DEFAULT_PROFILE = "balanced"
_MAX_EXTENDS_DEPTH = 8


def profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files(_PROFILE_PACKAGE).iterdir()
        if p.name.endswith(".yaml")
    )


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, [(where, f"not valid YAML: {problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyError(source, [("", f"expected a mapping, got {type(data).__name__}")])
    return data


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_raw(
    ref: str, base_dir: Path | None, depth: int, seen: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], str]:
    """Returns the fully merged raw mapping for ``ref`` and a display name;
    ``seen`` holds the files already on the ``extends`` chain."""
    if depth > _MAX_EXTENDS_DEPTH:
        raise PolicyError(ref, [("extends", f"chain deeper than {_MAX_EXTENDS_DEPTH} (a cycle?)")])
    path = Path(ref) if base_dir is None else base_dir / ref
    if ref in profiles() and not path.is_file():
        source = f"<profile {ref}>"
        text = resources.files(_PROFILE_PACKAGE).joinpath(f"{ref}.yaml").read_text("utf-8")
        folder = None
    else:
        source = str(path)
        if path.resolve() in seen:
            chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
            raise PolicyError(source, [("", f"extends cycle: {chain}")])
        seen = (*seen, path.resolve())
        try:
            raw_bytes = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            hint = f" (shipped profiles: {', '.join(profiles())})" if base_dir is None else ""
            raise PolicyError(source, [("", f"cannot read file: {reason}{hint}")]) from None
        try:
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError(source, [("", "file is not valid UTF-8")]) from None
        folder = path.parent
    data = _read_yaml(text, source)
    parent = data.get("extends")
    if parent is None:
        return data, source
    if not isinstance(parent, str) or not parent:
        raise PolicyError(source, [("extends", "must be a profile name or a file path")])
    try:
        parent_data, _ = _load_raw(parent, folder, depth + 1, seen)
    except PolicyError as exc:
        problems = [
            (f"extends -> {exc.source}" + (f": {p}" if p else ""), m) for p, m in exc.problems
        ]
        raise PolicyError(source, problems) from None
    parent_data = {k: v for k, v in parent_data.items() if k not in ("name", "description")}
    return _deep_merge(parent_data, data), source


def validate(data: dict[str, Any], source: str) -> Policy:
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = [(_format_loc(e["loc"]), e["msg"]) for e in exc.errors()]
        raise PolicyError(source, problems) from None
    for name, settings in policy.detectors.items():
        if settings.enabled and settings.on_error is OnError.ALLOW:
            log.warning("policy %s lets detector %r fail open (on_error: allow)", source, name)
    return policy


def load_policy(ref: str | Path = DEFAULT_PROFILE) -> Policy:
    """Load a shipped profile by name or a YAML file by path."""
    data, source = _load_raw(str(ref), None, 0)
    return validate(data, source)


def load_policy_text(text: str, source: str = "<string>") -> Policy:
    """Load a policy from YAML text; ``extends`` may only name shipped profiles."""
    data = _read_yaml(text, source)
    parent = data.get("extends")
    if isinstance(parent, str) and parent in profiles():
        base, _ = _load_raw(parent, None, 1)
        base = {k: v for k, v in base.items() if k not in ("name", "description")}
        data = _deep_merge(base, data)
    elif parent is not None:
        raise PolicyError(source, [("extends", f"unknown profile {parent!r}")])
    return validate(data, source)


def json_schema() -> dict[str, Any]:
    return Policy.model_json_schema()
