"""The HTML report opens in headless Chromium, loads nothing from outside,
and shows its charts (checked in the rendered page, plus a screenshot)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mantlet.redteam import HttpChatModel, RunOptions, Seeds, TargetRun, expand, load_probes
from mantlet.redteam.runner import DEFAULT_SYSTEM_PROMPT
from mantlet.redteam.session import run_session

CHROMIUM = "/usr/bin/chromium"
REQUIRED = os.environ.get("MANTLET_REQUIRE_SERVICES") == "1"  # set by .ci/run


def _chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if REQUIRED:
        pytest.fail(f"{CHROMIUM} missing although MANTLET_REQUIRE_SERVICES=1 (.ci installs it)")
    pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)")


def _report(server: Any, out: Path) -> None:
    probes = [p for p in load_probes() if p.id in {"spl-repeat", "pi-direct-override", "jb-dan"}]
    attempts = expand(probes, converters=["base64", "rot13"])

    async def go() -> None:
        targets = [
            TargetRun("target", HttpChatModel(server.url("leaky"), "fake"), "fake"),
            TargetRun("compare", HttpChatModel(server.url("refusing"), "fake"), "fake"),
        ]
        try:
            await run_session(
                targets,
                attempts,
                out,
                seeds=Seeds.load_or_create(out, DEFAULT_SYSTEM_PROMPT),
                options=RunOptions(max_tokens=32, rounds=0),
            )
        finally:
            for t in targets:
                await t.model.aclose()

    asyncio.run(go())


def test_html_report_renders_its_charts_in_headless_chromium(
    fake_server: Any, tmp_path: Path
) -> None:
    executable = _chromium()
    playwright = pytest.importorskip("playwright.sync_api")
    server, _ = fake_server
    _report(server, tmp_path)
    page_url = (tmp_path / "report.html").resolve().as_uri()
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_url)
            charts = page.locator("svg.chart")
            assert charts.count() == 4  # OWASP, ATLAS, category, converter
            # Every bar is laid out with a real size and is what is drawn there (sampled
            # above the interval line that crosses its middle).
            boxes = page.evaluate(
                """() => [...document.querySelectorAll('rect.bar')].map(r => {
                    const b = r.getBoundingClientRect();
                    r.scrollIntoView();
                    const c = r.getBoundingClientRect();
                    const hit = document.elementFromPoint(c.x + c.width / 2, c.y + 2);
                    return {w: b.width, h: b.height, visible: hit === r};
                })"""
            )
            assert boxes and all(b["w"] > 0 and b["h"] > 0 for b in boxes)
            assert all(b["visible"] for b in boxes if b["w"] >= 2)
            # Leaky target: full bars; refusing target: zero-width stubs (1 px).
            widths = sorted(b["w"] for b in boxes)
            assert widths[0] <= 2 and widths[-1] > 500
            shot = tmp_path / "report.png"
            page.locator("svg.chart").first.screenshot(path=str(shot))
            assert shot.stat().st_size > 2000
            text = page.inner_text("body")
            assert "LLM07" in text and "AML.T0056" in text and "Findings: target" in text
        finally:
            browser.close()
    assert requests == [page_url]  # self-contained: no other request was made
    keep = os.environ.get("MANTLET_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
