"""Aggregation: attack success rate (ASR) with 95 % Wilson score intervals,
per category, OWASP LLM 2025 id, ATLAS technique and converter, for one or
two targets; written as ``report.json`` (machine-readable, usable as
compliance evidence) and ``report.html``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from mantlet.redteam.probes import ATLAS, OWASP

__all__ = ["SCHEMA", "build_report", "summarize", "wilson"]

SCHEMA = "mantlet.redteam.report/1"
_Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson, 1927): unlike
    the normal approximation it stays inside [0, 1] and is sensible at 0 or n
    successes, which small red-team samples hit all the time. Five lines of
    arithmetic, so no statistics dependency for it."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(successes: int, n: int) -> dict[str, Any]:
    low, high = wilson(successes, n)
    return {
        "n": n,
        "successes": successes,
        "asr": successes / n if n else None,
        "ci95": [round(low, 4), round(high, 4)],
    }


def _group(
    records: Sequence[dict[str, Any]], keys_of: Any, names: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    counts: dict[str, list[int]] = {}
    for record in records:
        for key in keys_of(record):
            tally = counts.setdefault(key, [0, 0])
            tally[0] += int(record["success"])
            tally[1] += 1
    out = {}
    for key in sorted(counts):
        entry = _rate(counts[key][0], counts[key][1])
        if names is not None:
            entry = {"name": names.get(key, ""), **entry}
        out[key] = entry
    return out


def summarize(
    slot: str,
    label: str,
    model: str,
    records: Sequence[dict[str, Any]],
    planned: int,
    skipped: Iterable[str],
) -> dict[str, Any]:
    """One target's section: counts of what really happened, rates, findings."""
    scored = [r for r in records if r["status"] != "error"]
    initial = [{**r, "success": bool(r["rounds"][0]["success"])} for r in scored]
    findings = []
    for record in scored:
        if not record["success"]:
            continue
        winning = record["rounds"][record["success_round"]]
        findings.append(
            {
                "id": record["id"],
                "probe": record["probe"],
                "category": record["category"],
                "owasp": record["owasp"],
                "atlas": record["atlas"],
                "converter": record["converter"],
                "round": record["success_round"],
                "judges": [j for j in winning["judges"] if j["hit"]],
                # The conversation as sent and answered (a turn the target
                # refused with an error is noted as such).
                "transcript": winning["messages"]
                + [
                    {"role": "target", "content": f"[{r['status']}] {r['detail']}"}
                    for r in winning["replies"][-1:]
                    if r["status"] != "ok"
                ],
            }
        )
    return {
        "slot": slot,
        "label": label,
        "model": model,
        "attempts": {
            "planned": planned,
            "completed": len(records),
            "scored": len(scored),
            "errored": len(records) - len(scored),
            "blocked": sum(1 for r in scored if r["status"] == "blocked"),
            "skipped_budget": len(list(skipped)),
            "refined_by_attacker": sum(1 for r in scored if len(r["rounds"]) > 1),
        },
        "overall": _rate(sum(r["success"] for r in scored), len(scored)),
        "overall_without_attacker": _rate(sum(r["success"] for r in initial), len(initial)),
        "by_owasp": _group(scored, lambda r: r["owasp"], OWASP),
        "by_atlas": _group(scored, lambda r: r["atlas"] or ["(none)"], ATLAS),
        "by_category": _group(scored, lambda r: [r["category"]]),
        "by_converter": _group(scored, lambda r: [r["converter"]]),
        "findings": findings,
    }


def build_report(
    sections: Sequence[dict[str, Any]], options: dict[str, Any], version: str
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool": {"name": "mantlet redteam", "version": version},
        "options": options,
        "frameworks": {
            "owasp": "OWASP Top 10 for LLM Applications 2025",
            "atlas": "MITRE ATLAS",
        },
        # The primary target's ASR per OWASP id, for compliance tooling.
        "asr_by_owasp": {k: v["asr"] for k, v in sections[0]["by_owasp"].items()},
        "targets": list(sections),
    }
    if len(sections) > 1:
        report["comparison"] = {
            dim: _compare(sections, dim)
            for dim in ("by_owasp", "by_atlas", "by_category", "by_converter")
        }
        report["comparison"]["overall"] = {s["slot"]: s["overall"]["asr"] for s in sections}
    return report


def _compare(sections: Sequence[dict[str, Any]], dim: str) -> dict[str, dict[str, Any]]:
    keys = sorted({k for s in sections for k in s[dim]})
    return {k: {s["slot"]: s[dim].get(k, {}).get("asr") for s in sections} for k in keys}
