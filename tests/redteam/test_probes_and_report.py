"""The probe library is well-formed and tagged; attempts cover every category
under a limit; Wilson intervals and the report's counts are right."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mantlet.errors import ConfigError
from mantlet.redteam import ATLAS, CONVERTERS, OWASP, expand, load_probes, wilson
from mantlet.redteam.report import summarize

ATLAS_ID = re.compile(r"^AML\.T\d{4}(\.\d{3})?$")


def test_library_is_tagged_with_owasp_and_atlas() -> None:
    probes = load_probes()
    assert len(probes) >= 20
    owasp = {o for p in probes for o in p.owasp}
    # The OWASP ids are all exercised.
    assert {"LLM01", "LLM02", "LLM05", "LLM06", "LLM07", "LLM09", "LLM10"} <= owasp
    assert owasp <= set(OWASP)
    techniques = {t for p in probes for t in p.atlas}
    assert all(ATLAS_ID.match(t) for t in techniques)
    assert {"AML.T0051.000", "AML.T0051.001", "AML.T0054", "AML.T0056", "AML.T0057"} <= techniques
    assert {"AML.T0029", "AML.T0053", "AML.T0077"} <= techniques
    # Every technique the library names is one the report can label.
    assert techniques <= set(ATLAS)


def test_every_probe_renders_its_payload_in_every_converter() -> None:
    for attempt in expand(load_probes()):
        turns = attempt.probe.messages(attempt.payload())
        assert turns and not any("{payload}" in t or "{document}" in t for t in turns)
        recovered = (
            CONVERTERS[attempt.converter].recover(attempt.payload())
            if attempt.converter
            else attempt.payload()
        )
        assert recovered.lower() == attempt.probe.payload.lower()


def test_limited_runs_cover_every_category_and_ids_are_unique() -> None:
    probes = load_probes()
    categories = {p.category for p in probes}
    attempts = expand(probes, limit=len(categories))
    assert {a.probe.category for a in attempts} == categories
    everything = expand(probes)
    assert len({a.id for a in everything}) == len(everything)
    plain = [a for a in everything if a.converter is None]
    assert len(plain) == len(probes) and everything[: len(probes)] == plain
    assert not any(a.converter for a in everything if not a.probe.converters)


def test_bad_probe_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "probes:\n  - {id: x, category: c, owasp: [LLM99], atlas: [], goal: g, payload: p,"
        " judges: [marker]}\n"
    )
    with pytest.raises(ConfigError, match="LLM99"):
        load_probes([bad])
    bad.write_text(
        "probes:\n  - {id: x, category: c, owasp: [LLM01], atlas: [AML.T9999], goal: g,"
        " payload: p, judges: [marker]}\n"
    )
    with pytest.raises(ConfigError, match=r"AML\.T9999"):
        load_probes([bad])


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (1, 3, 0.0615, 0.7923),
        (0, 0, 0.0, 1.0),
    ],
)
def test_wilson_interval(successes: int, n: int, low: float, high: float) -> None:
    got = wilson(successes, n)
    assert got == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


def test_summary_counts_errors_apart_and_keeps_round_zero_rate() -> None:
    def record(i: int, status: str, rounds: list[bool]) -> dict[str, object]:
        return {
            "id": f"p{i}:plain",
            "probe": f"p{i}",
            "category": "c",
            "owasp": ["LLM01"],
            "atlas": ["AML.T0051.000"],
            "converter": "plain",
            "status": status,
            "success": any(rounds),
            "success_round": rounds.index(True) if any(rounds) else None,
            "rounds": [{"success": s, "messages": [], "replies": [], "judges": []} for s in rounds],
        }

    records = [
        record(0, "ok", [True]),
        record(1, "ok", [False, True]),
        record(2, "blocked", [False]),
        record(3, "error", [False]),
    ]
    section = summarize("target", "url", "m", records, planned=5, skipped=["p4:plain"])
    assert section["attempts"] == {
        "planned": 5,
        "completed": 4,
        "scored": 3,
        "errored": 1,
        "blocked": 1,
        "skipped_budget": 1,
        "refined_by_attacker": 1,
    }
    assert (section["overall"]["successes"], section["overall"]["n"]) == (2, 3)
    assert section["overall_without_attacker"]["successes"] == 1
    assert section["by_owasp"]["LLM01"]["name"] == "Prompt Injection"


def test_unguarded_baseline_example_loads() -> None:
    from mantlet.gateway.settings import load_settings
    from mantlet.policy.loader import load_policy

    root = Path(__file__).resolve().parents[2]
    settings = load_settings(root / "examples/redteam/unguarded-gateway.yaml")
    assert settings.canary is False
    assert load_policy(root / "examples/redteam/no-detectors.yaml").detectors == {}
