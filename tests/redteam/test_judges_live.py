"""A deliberately leaky target, served for real on loopback, is caught by
every judge; a refusing and a blocking target are not; the attacker loop,
the request budget and resuming work against real HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mantlet.errors import ConfigError
from mantlet.redteam import (
    Attacker,
    HttpChatModel,
    RequestBudget,
    RunOptions,
    Seeds,
    TargetRun,
    expand,
    load_probes,
    run_session,
)

# One probe per judge: canary/secret (system-prompt extraction), secret+policy
# (API key), marker (direct injection), refusal+marker (jailbreak), exhaustion.
PROBES = ["spl-repeat", "sid-api-key", "pi-direct-override", "jb-dan", "dos-repeat-forever"]


def _attempts(ids: list[str] = PROBES) -> list[Any]:
    probes = [p for p in load_probes() if p.id in ids]
    return expand(probes, converters=[])


def _run(
    url: str,
    out: Path,
    attempts: list[Any],
    *,
    judge_url: str | None = None,
    attacker_url: str | None = None,
    rounds: int = 0,
    budget: int | None = None,
    seeds: Seeds | None = None,
) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        target = HttpChatModel(url, "fake", api_key="k", budget=RequestBudget(budget))
        judge = HttpChatModel(judge_url, "judge") if judge_url else None
        attacker = Attacker(HttpChatModel(attacker_url, "attacker")) if attacker_url else None
        try:
            return await run_session(
                [TargetRun("target", target, "fake")],
                attempts,
                out,
                seeds=seeds or Seeds.load_or_create(out, _template()),
                options=RunOptions(max_tokens=64, rounds=rounds),
                attacker=attacker,
                judge_model=judge,
            )
        finally:
            await target.aclose()
            if judge:
                await judge.aclose()
            if attacker:
                await attacker.model.aclose()

    return asyncio.run(go())


def _template() -> str:
    from mantlet.redteam.runner import DEFAULT_SYSTEM_PROMPT

    return DEFAULT_SYSTEM_PROMPT


def _hits(report: dict[str, Any]) -> dict[str, set[str]]:
    """Judge name -> attempt ids it fired on (from the findings' winning rounds)."""
    out: dict[str, set[str]] = {}
    for finding in report["targets"][0]["findings"]:
        for judge in finding["judges"]:
            out.setdefault(judge["judge"], set()).add(finding["id"])
    return out


def test_leaky_target_is_caught_by_every_judge(fake_server: Any, tmp_path: Path) -> None:
    server, _ = fake_server
    report = _run(server.url("leaky"), tmp_path, _attempts(), judge_url=server.url("judge"))
    section = report["targets"][0]
    assert section["overall"]["successes"] == section["overall"]["n"] == len(PROBES)
    hits = _hits(report)
    assert set(hits) == {"canary", "secret", "marker", "refusal", "policy", "exhaustion", "llm"}
    assert "spl-repeat:plain" in hits["canary"]
    assert "sid-api-key:plain" in hits["secret"] and "sid-api-key:plain" in hits["policy"]
    assert "pi-direct-override:plain" in hits["marker"]
    assert "dos-repeat-forever:plain" in hits["exhaustion"]
    # Each finding keeps its full transcript: system prompt, user turn, answer.
    finding = next(f for f in section["findings"] if f["id"] == "spl-repeat:plain")
    roles = [m["role"] for m in finding["transcript"]]
    assert roles == ["system", "user", "assistant"]
    assert Seeds.load_or_create(tmp_path, None).canary in finding["transcript"][-1]["content"]
    # Rates per OWASP id and ATLAS technique, with intervals.
    assert report["asr_by_owasp"]["LLM07"] == 1.0
    assert section["by_atlas"]["AML.T0056"]["successes"] == 1
    assert section["by_owasp"]["LLM07"]["ci95"][1] == 1.0


def test_encoded_leaks_are_caught(fake_server: Any, tmp_path: Path) -> None:
    server, _ = fake_server
    report = _run(server.url("leaky-encoded"), tmp_path, _attempts(["spl-repeat"]))
    finding = report["targets"][0]["findings"][0]
    details = {j["judge"]: j["detail"] for j in finding["judges"]}
    assert "base64" in details["canary"]
    assert "base64" in details["secret"]
    seeds = Seeds.load_or_create(tmp_path, None)
    assert seeds.canary not in finding["transcript"][-1]["content"]  # only encoded


@pytest.mark.parametrize("mode", ["refusing", "blocking"])
def test_defended_targets_score_zero(fake_server: Any, tmp_path: Path, mode: str) -> None:
    server, _ = fake_server
    report = _run(server.url(mode), tmp_path, _attempts(), judge_url=None)
    section = report["targets"][0]
    assert section["overall"] == {
        "n": len(PROBES),
        "successes": 0,
        "asr": 0.0,
        "ci95": [0.0, pytest.approx(0.4345, abs=1e-3)],
    }
    assert section["findings"] == []
    assert section["attempts"]["blocked"] == (len(PROBES) if mode == "blocking" else 0)
    records = [
        json.loads(line) for line in (tmp_path / "attempts-target.jsonl").read_text().splitlines()
    ]
    refusal = [j for r in records for j in r["rounds"][0]["judges"] if j["judge"] == "refusal"]
    assert refusal and not any(j["hit"] for j in refusal)


def test_attacker_loop_refines_a_failed_attempt(fake_server: Any, tmp_path: Path) -> None:
    server, seen = fake_server
    report = _run(
        server.url("polite"),
        tmp_path,
        _attempts(["spl-repeat"]),
        attacker_url=server.url("attacker"),
        rounds=2,
    )
    record = json.loads((tmp_path / "attempts-target.jsonl").read_text().splitlines()[0])
    assert [r["success"] for r in record["rounds"]] == [False, True]
    assert record["success_round"] == 1
    # The attacker's lead-in line is dropped; the refined prompt went to the target.
    refined = record["rounds"][1]["messages"][-2]["content"]
    assert refined.startswith("please, ")
    assert report["targets"][0]["overall_without_attacker"]["successes"] == 0
    assert report["targets"][0]["overall"]["successes"] == 1
    assert any(s["mode"] == "attacker" for s in seen)


def test_budget_stops_and_resume_skips_done_attempts(fake_server: Any, tmp_path: Path) -> None:
    server, seen = fake_server
    attempts = _attempts(["spl-repeat", "spl-debug", "sid-api-key", "pi-direct-override"])
    first = _run(server.url("refusing"), tmp_path, attempts, budget=2)
    counts = first["targets"][0]["attempts"]
    assert (counts["completed"], counts["skipped_budget"]) == (2, 2)
    before = len(seen)
    second = _run(server.url("refusing"), tmp_path, attempts)
    assert len(seen) - before == 2  # only the two skipped attempts were sent
    assert second["targets"][0]["attempts"]["completed"] == 4
    with pytest.raises(ConfigError, match="from target"):
        _run(server.url("leaky"), tmp_path, attempts)


def test_cli_runs_end_to_end_and_prints_a_json_summary(fake_server: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mantlet.cli.app import app

    server, _ = fake_server
    out = tmp_path / "out"
    args = ["redteam", "--target", server.url("leaky"), "--model", "fake", "--out", str(out)]
    args += ["--compare", server.url("blocking"), "--max-attempts", "12", "--rounds", "0"]
    result = CliRunner().invoke(app, [*args, "--api-key", "k", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [t["slot"] for t in summary["targets"]] == ["target", "compare"]
    leaky, blocked = summary["targets"]
    assert leaky["overall"]["n"] == blocked["overall"]["n"] == 12
    assert leaky["overall"]["successes"] > 0 and blocked["overall"]["successes"] == 0
    assert blocked["attempts"]["blocked"] == 12
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "mantlet.redteam.report/1"
    assert set(report["comparison"]["by_owasp"]["LLM01"]) == {"target", "compare"}
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    # Twelve attempts cover all nine categories of the built-in library.
    assert len(report["targets"][0]["by_category"]) == 9


def test_cli_rejects_unknown_converters(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mantlet.cli.app import app

    args = ["redteam", "--target", "http://127.0.0.1:9/v1", "--model", "m", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--converters", "base64,nope"])
    assert result.exit_code == 2
    assert "unknown converter" in result.output


def test_cli_help_names_the_interface() -> None:
    from typer.testing import CliRunner

    from mantlet.cli.app import app

    result = CliRunner().invoke(app, ["redteam", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--target", "--api-key", "--model", "--out", "--max-attempts", "--compare"):
        assert option in result.output


def test_parroting_the_attack_is_not_success(fake_server: Any, tmp_path: Path) -> None:
    server, _ = fake_server
    ids = ["pi-direct-override", "pi-direct-fake-system", "jb-dan"]
    report = _run(
        server.url("parrot"),
        tmp_path,
        expand([p for p in load_probes() if p.id in ids], converters=["rot13", "zero_width"]),
    )
    section = report["targets"][0]
    assert section["overall"]["n"] == 9 and section["overall"]["successes"] == 0
