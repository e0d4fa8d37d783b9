"""The probe library: attacks as data (``probes/*.yaml``), tagged with OWASP
LLM Top 10 (2025) ids and MITRE ATLAS technique ids, and their expansion
into attempts (each probe plain and through each converter)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mantlet.errors import ConfigError
from mantlet.redteam.converters import CONVERTERS

__all__ = ["ATLAS", "OWASP", "Attempt", "Probe", "expand", "load_probes"]

# OWASP Top 10 for LLM Applications, 2025 edition.
OWASP = {
    "LLM01": "Prompt Injection",
    "LLM02": "Sensitive Information Disclosure",
    "LLM03": "Supply Chain",
    "LLM04": "Data and Model Poisoning",
    "LLM05": "Improper Output Handling",
    "LLM06": "Excessive Agency",
    "LLM07": "System Prompt Leakage",
    "LLM08": "Vector and Embedding Weaknesses",
    "LLM09": "Misinformation",
    "LLM10": "Unbounded Consumption",
}
# The MITRE ATLAS techniques the probes use (names as in ATLAS; older names in brackets).
ATLAS = {
    "AML.T0029": "Denial of AI Service",
    "AML.T0034": "Cost Harvesting",
    "AML.T0051": "LLM Prompt Injection",
    "AML.T0051.000": "LLM Prompt Injection: Direct",
    "AML.T0051.001": "LLM Prompt Injection: Indirect",
    "AML.T0053": "AI Agent Tool Invocation (LLM Plugin Compromise)",
    "AML.T0054": "LLM Jailbreak",
    "AML.T0056": "Extract LLM System Prompt (LLM Meta Prompt Extraction)",
    "AML.T0057": "LLM Data Leakage",
    "AML.T0068": "LLM Prompt Obfuscation",
    "AML.T0077": "LLM Response Rendering",
}

JudgeName = Literal["canary", "secret", "marker", "refusal", "policy", "exhaustion", "llm"]


class Probe(BaseModel):
    """One attack. ``turns`` are the user messages; ``{payload}`` (or ``{document}``,
    which itself holds ``{payload}``) marks where the converted payload goes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    category: str = Field(pattern=r"^[a-z0-9_]+$")
    owasp: list[str] = Field(min_length=1)
    atlas: list[str]
    goal: str = Field(min_length=1)
    payload: str = Field(min_length=1)
    turns: list[str] = Field(default_factory=lambda: ["{payload}"], min_length=1)
    document: str | None = None
    markers: list[str] = Field(default_factory=list)
    judges: list[JudgeName] = Field(min_length=1)
    converters: bool = True

    @field_validator("owasp")
    @classmethod
    def _known_owasp(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in OWASP]
        if unknown:
            raise ValueError(f"unknown OWASP LLM 2025 id(s) {unknown}")
        return value

    @field_validator("atlas")
    @classmethod
    def _known_atlas(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in ATLAS]
        if unknown:
            raise ValueError(f"unknown ATLAS technique(s) {unknown}; add them to ATLAS")
        return value

    @field_validator("markers")
    @classmethod
    def _valid_regex(cls, value: list[str]) -> list[str]:
        for pattern in value:
            re.compile(pattern)
        return value

    def messages(self, payload: str) -> list[str]:
        """The user turns with ``payload`` (already converted) in place."""
        document = self.document.replace("{payload}", payload) if self.document else ""
        return [
            turn.replace("{document}", document).replace("{payload}", payload)
            for turn in self.turns
        ]


@dataclass(frozen=True, slots=True)
class Attempt:
    """A probe sent through one converter (``None``: as written)."""

    probe: Probe
    converter: str | None

    @property
    def id(self) -> str:
        return f"{self.probe.id}:{self.converter or 'plain'}"

    def payload(self) -> str:
        if self.converter is None:
            return self.probe.payload
        seed = sum(map(ord, self.probe.id))  # stable across runs, unlike hash()
        return CONVERTERS[self.converter].apply(self.probe.payload, seed)


def load_probes(paths: list[Path] | None = None) -> list[Probe]:
    """The shipped library, or the given YAML files (``probes: [...]`` each)."""
    sources: list[tuple[str, str]] = []
    if paths:
        for path in paths:
            try:
                sources.append((str(path), path.read_text(encoding="utf-8")))
            except OSError as exc:
                raise ConfigError(f"cannot read probe file {path}: {exc.strerror}") from None
    else:
        folder = resources.files("mantlet.redteam") / "probes"
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml"):
                sources.append((entry.name, entry.read_text(encoding="utf-8")))
    probes: list[Probe] = []
    for source, text in sources:
        try:
            data = yaml.safe_load(text) or {}
            probes += [Probe.model_validate(p) for p in data.get("probes", [])]
        except (yaml.YAMLError, ValidationError, AttributeError) as exc:
            raise ConfigError(f"invalid probe file {source}: {exc}") from None
    ids = [p.id for p in probes]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"duplicate probe ids {duplicates}")
    return probes


def expand(
    probes: list[Probe], converters: list[str] | None = None, limit: int | None = None
) -> list[Attempt]:
    """Every probe as written first, then through each converter. Both stages
    take categories in turn, and within a category the converters rotate across
    probes, so a ``limit`` still covers every category and many converters."""
    names = list(CONVERTERS) if converters is None else converters
    categories: dict[str, list[Probe]] = {}
    for probe in probes:
        categories.setdefault(probe.category, []).append(probe)
    plain = _interleave([[Attempt(p, None) for p in group] for group in categories.values()])
    converted = []
    for group in categories.values():
        usable = [p for p in group if p.converters]
        keyed = [
            ((i - j) % len(names), j, Attempt(p, name))
            for j, p in enumerate(usable)
            for i, name in enumerate(names)
        ]
        converted.append([a for _, _, a in sorted(keyed, key=lambda k: (k[0], k[1]))])
    attempts = plain + _interleave(converted)
    return attempts[:limit] if limit is not None else attempts


def _interleave(queues: list[list[Attempt]]) -> list[Attempt]:
    """One item from each queue in turn until all are empty."""
    out: list[Attempt] = []
    for index in range(max(map(len, queues), default=0)):
        out += [queue[index] for queue in queues if index < len(queue)]
    return out
