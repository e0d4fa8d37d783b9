"""``report.html``: one self-contained page (inline CSS and SVG, no scripts,
no external assets) with ASR bar charts and 95 % intervals per OWASP id,
ATLAS technique, category and converter, and every finding's transcript."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_html"]

_COLOURS = ("#c0392b", "#2471a3", "#7d3c98", "#148f77")
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4}.legend span{display:inline-block;margin-right:1.5em}
.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
details{margin:.4em 0;border:1px solid #eee;padding:.3em .6em}summary{cursor:pointer}
pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;padding:.5em;margin:.2em 0}
.role{font-weight:bold;color:#555}.muted{color:#777}
"""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _chart(title: str, sections: list[dict[str, Any]], dim: str) -> str:
    keys = sorted({k for s in sections for k in s[dim]})
    if not keys:
        return f"<h3>{escape(title)}</h3><p class='muted'>no data</p>"
    label_w, plot_w, bar_h, gap = 300, 560, 14, 10
    row_h = bar_h * len(sections) + gap
    height = 30 + row_h * len(keys)
    parts = [
        f'<svg class="chart" data-dim="{dim}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{label_w + plot_w + 70}" height="{height}" role="img" '
        f'aria-label="{escape(title)}">'
    ]
    for tick in range(0, 101, 25):
        x = label_w + plot_w * tick / 100
        parts.append(
            f'<line x1="{x}" y1="18" x2="{x}" y2="{height}" stroke="#e5e5e5"/>'
            f'<text x="{x}" y="12" font-size="10" text-anchor="middle">{tick}%</text>'
        )
    for row, key in enumerate(keys):
        y0 = 24 + row * row_h
        name = sections[0][dim].get(key, {}).get("name") or ""
        label = f"{key} {name}".strip()
        parts.append(
            f'<text x="{label_w - 6}" y="{y0 + row_h / 2}" font-size="11" text-anchor="end">'
            f"{escape(label[:48])}</text>"
        )
        for i, section in enumerate(sections):
            entry = section[dim].get(key)
            y = y0 + i * bar_h
            colour = _COLOURS[i % len(_COLOURS)]
            if not entry or not entry["n"]:
                continue
            asr = entry["asr"] or 0.0
            low, high = entry["ci95"]
            x_low, x_high = label_w + plot_w * low, label_w + plot_w * high
            y_mid = y + bar_h / 2 - 1
            parts.append(
                f'<rect class="bar" x="{label_w}" y="{y}" width="{max(1.0, plot_w * asr):.1f}" '
                f'height="{bar_h - 2}" fill="{colour}"><title>{escape(section["slot"])}: '
                f"{entry['successes']}/{entry['n']} = {_pct(asr)} (95 % CI {_pct(low)}-"
                f"{_pct(high)})</title></rect>"
                f'<line class="ci" x1="{x_low:.1f}" x2="{x_high:.1f}" y1="{y_mid}" y2="{y_mid}"'
                ' stroke="#000" stroke-width="1.5"/>'
                f'<text x="{label_w + plot_w + 4}" y="{y + bar_h - 3}" font-size="10">'
                f"{entry['successes']}/{entry['n']}</text>"
            )
    parts.append("</svg>")
    return f"<h3>{escape(title)}</h3>" + "".join(parts)


def _table(sections: list[dict[str, Any]], dim: str) -> str:
    keys = sorted({k for s in sections for k in s[dim]})
    head = "".join(f"<th>{escape(s['slot'])}: ASR (95 % CI)</th>" for s in sections)
    rows = []
    for key in keys:
        name = sections[0][dim].get(key, {}).get("name", "")
        cells = []
        for section in sections:
            entry = section[dim].get(key)
            if entry:
                low, high = entry["ci95"]
                cells.append(
                    f"<td>{entry['successes']}/{entry['n']} = {_pct(entry['asr'])} "
                    f"({_pct(low)}-{_pct(high)})</td>"
                )
            else:
                cells.append("<td>-</td>")
        rows.append(f"<tr><td>{escape(key)}</td><td>{escape(name)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>id</th><th>name</th>{head}</tr>{''.join(rows)}</table>"


def _findings(section: dict[str, Any]) -> str:
    if not section["findings"]:
        return "<p class='muted'>No successful attacks.</p>"
    items = []
    for finding in section["findings"]:
        judges = ", ".join(f"{j['judge']}: {j['detail']}" for j in finding["judges"])
        turns = "".join(
            f"<div><span class='role'>{escape(m['role'])}</span><pre>{escape(m['content'])}</pre>"
            "</div>"
            for m in finding["transcript"]
        )
        items.append(
            f"<details><summary>{escape(finding['id'])} - {escape(', '.join(finding['owasp']))}"
            f" - round {finding['round']} - {escape(judges)}</summary>{turns}</details>"
        )
    return "".join(items)


def render_html(report: dict[str, Any]) -> str:
    sections: list[dict[str, Any]] = report["targets"]
    legend = "".join(
        f'<span><i class="swatch" style="background:{_COLOURS[i % len(_COLOURS)]}"></i>'
        f"{escape(s['slot'])}: {escape(s['label'])}</span>"
        for i, s in enumerate(sections)
    )
    summary_rows = "".join(
        f"<tr><td>{escape(s['slot'])}</td><td>{escape(s['label'])}</td>"
        f"<td>{s['overall']['successes']}/{s['overall']['n']} = {_pct(s['overall']['asr'])} "
        f"({_pct(s['overall']['ci95'][0])}-{_pct(s['overall']['ci95'][1])})</td>"
        f"<td>{_pct(s['overall_without_attacker']['asr'])}</td>"
        f"<td>{s['attempts']['completed']}/{s['attempts']['planned']}</td>"
        f"<td>{s['attempts']['blocked']}</td><td>{s['attempts']['errored']}</td>"
        f"<td>{s['attempts']['skipped_budget']}</td></tr>"
        for s in sections
    )
    body = [
        "<h1>Mantlet red-team report</h1>",
        f"<p class='muted'>{escape(report['generated_at'])} - {escape(report['tool']['name'])} "
        f"{escape(report['tool']['version'])} - attack success rate (ASR) with 95 % Wilson "
        "intervals; OWASP Top 10 for LLM Applications 2025 and MITRE ATLAS.</p>",
        f"<p class='legend'>{legend}</p>",
        "<table><tr><th>slot</th><th>target</th><th>ASR (95 % CI)</th>"
        "<th>ASR without attacker</th><th>completed/planned</th><th>blocked</th>"
        f"<th>errored</th><th>skipped (budget)</th></tr>{summary_rows}</table>",
        "<h2>By OWASP LLM Top 10 (2025)</h2>",
        _chart("ASR per OWASP id", sections, "by_owasp"),
        _table(sections, "by_owasp"),
        "<h2>By MITRE ATLAS technique</h2>",
        _chart("ASR per ATLAS technique", sections, "by_atlas"),
        _table(sections, "by_atlas"),
        "<h2>By category</h2>",
        _chart("ASR per category", sections, "by_category"),
        _table(sections, "by_category"),
        "<h2>By converter</h2>",
        _chart("ASR per converter", sections, "by_converter"),
        _table(sections, "by_converter"),
    ]
    for section in sections:
        body.append(f"<h2>Findings: {escape(section['slot'])}</h2>{_findings(section)}")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>Mantlet red-team report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )
