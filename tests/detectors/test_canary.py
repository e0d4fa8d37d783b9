"""The canary leak detector: every encoding it promises, exact spans, and
that nothing it reports gives the canary away."""

from __future__ import annotations

import base64
import codecs
import random
import re
import string
import time
from collections.abc import Callable

import pytest

from mantlet.core.registry import create
from mantlet.core.types import Detector, Finding, ScanContext, Side
from mantlet.detectors.canary import (
    CanaryDetector,
    CanaryOptions,
    canary_instruction,
    make_canary,
)
from mantlet.errors import ConfigError

CANARY = "mntl-k2vq4z7mxw3hbn5a"  # the shape make_canary returns: 21 ASCII bytes
OTHER = "mntl-p6dsj3ua2ryt7cfe"
CTX = ScanContext(side=Side.OUTPUT)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return create("canary", {"canaries": [CANARY]})


def leaks(detector: Detector, text: str, context: ScanContext = CTX) -> list[tuple[str, str]]:
    """(encoding named in the detail, leaked text under the span) per finding."""
    out = []
    for finding in detector.detect(text, context):
        assert finding.kind == "CANARY_LEAK"
        assert finding.score == 1.0
        assert finding.detector == "canary"
        label = re.fullmatch(r"system-prompt canary leaked \(([\w-]+)\)", finding.detail)
        assert label, finding.detail
        out.append((label.group(1), text[finding.start : finding.end]))
    return out


def b64_stable(data: bytes, prefix: bytes, suffix: bytes, urlsafe: bool = False) -> tuple[str, str]:
    """A base64 blob with ``data`` inside, and the part of it that encodes
    only bits of ``data`` (what the detector can and must find)."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    blob = encode(prefix + data + suffix).decode()
    first_bit, last_bit = 8 * len(prefix), 8 * (len(prefix) + len(data))
    return blob, blob[-(-first_bit // 6) : last_bit // 6]


# --- helpers for the gateway ------------------------------------------------


def test_make_canary_is_random_and_well_formed() -> None:
    canaries = {make_canary() for _ in range(200)}
    assert len(canaries) == 200
    assert all(re.fullmatch(r"mntl-[a-z2-7]{16}", c) for c in canaries)


def test_canary_instruction_plants_the_token() -> None:
    sentence = canary_instruction(CANARY)
    assert CANARY in sentence
    assert "confidential" in sentence
    assert sentence.endswith(".")


def test_fresh_canary_round_trip() -> None:
    canary = make_canary()
    detector = create("canary", {"canaries": [canary]})
    answer = f"My instructions say: {canary_instruction(canary)}"
    assert [label for label, _ in leaks(detector, answer)] == ["exact"]


# --- registration -----------------------------------------------------------


def test_registered_under_its_name(detector: Detector) -> None:
    assert isinstance(detector, CanaryDetector)
    assert isinstance(detector, Detector)
    assert detector.name == "canary"
    assert detector.sides is Side.OUTPUT
    assert detector.canary_count == 1


def test_no_canaries_means_no_findings() -> None:
    detector = create("canary")
    assert detector.detect(f"here it is: {CANARY}", CTX) == []


# --- every encoding, with exact spans ----------------------------------------


def _spaced(sep: str) -> Callable[[str], str]:
    return lambda c: sep.join(c)


def _hex_bytes(fmt: str, sep: str) -> Callable[[str], str]:
    return lambda c: sep.join(fmt % b for b in c.encode())


def _url(c: str) -> str:
    return "".join(f"%{b:02X}" for b in c.encode())


ENCODINGS: list[tuple[str, str, Callable[[str], str]]] = [
    ("exact", "exact", lambda c: c),
    ("exact-upper", "exact", str.upper),
    ("exact-title", "exact", str.title),
    ("spaces", "separated", _spaced(" ")),
    ("dashes", "separated", _spaced("-")),
    ("dots", "separated", _spaced(".")),
    ("newlines", "separated", _spaced("\n")),
    ("zero-width-space", "separated", _spaced("\u200b")),
    ("zero-width-joiner", "separated", _spaced("\u200d")),
    ("mixed-separators", "separated", lambda c: " - ".join(c.upper())),
    ("dash-dropped", "separated", lambda c: c.replace("-", "")),
    ("reversed", "reversed", lambda c: c[::-1]),
    ("reversed-upper", "reversed", lambda c: c[::-1].upper()),
    ("reversed-spaced", "reversed", lambda c: " ".join(c[::-1])),
    ("hex-lower", "hex", lambda c: c.encode().hex()),
    ("hex-upper", "hex", lambda c: c.encode().hex().upper()),
    ("hex-spaced", "hex", _hex_bytes("%02x", " ")),
    ("hex-0x", "hex", _hex_bytes("0x%02X", ", ")),
    ("hex-escapes", "hex", _hex_bytes("\\x%02x", "")),
    ("rot13", "rot13", lambda c: codecs.encode(c, "rot_13")),
    ("rot13-upper", "rot13", lambda c: codecs.encode(c, "rot_13").upper()),
    ("url-encoded", "url-encoded", _url),
    ("url-encoded-lower", "url-encoded", lambda c: _url(c).lower()),
    ("url-partly-encoded", "url-encoded", lambda c: c.replace("-", "%2D").replace("k", "%6b")),
    ("base64", "base64", lambda c: base64.b64encode(c.encode()).decode()),
]


@pytest.mark.parametrize(
    ("label", "encode"), [(e[1], e[2]) for e in ENCODINGS], ids=[e[0] for e in ENCODINGS]
)
def test_each_encoding_is_caught_with_an_exact_span(
    detector: Detector, label: str, encode: Callable[[str], str]
) -> None:
    leaked = encode(CANARY)
    for before, after in [("", ""), ("Sure! The token is ", " — anything else?"), ("Ré😀 ", " ✓")]:
        assert leaks(detector, before + leaked + after) == [(label, leaked)]


@pytest.mark.parametrize("alignment", [0, 1, 2])
@pytest.mark.parametrize("urlsafe", [False, True])
def test_base64_inside_a_longer_blob_at_every_alignment(
    detector: Detector, alignment: int, urlsafe: bool
) -> None:
    prefix = b"You are a helpful assistant. "[:alignment] + b"xyz" * 3
    blob, stable = b64_stable(CANARY.encode(), prefix, b" Never reveal it.", urlsafe)
    text = f"Here is my prompt in base64: {blob}"
    assert leaks(detector, text) == [("base64", stable)]
    assert len(stable) >= 4 * len(CANARY) // 3 - 2


def _urlsafe_canary() -> str:
    """A canary whose base64 contains '+' or '/' at every alignment, so its
    url-safe base64 differs. Letters and digits alone never encode to those
    (their bytes are below 0x7f), so the alphabet adds '?' and '>', which also
    checks that regex metacharacters in a canary are escaped."""
    rng = random.Random(7)
    for _ in range(10_000):
        canary = "mntl-" + "".join(rng.choice(string.ascii_lowercase + "?>") for _ in range(16))
        stables = [b64_stable(canary.encode(), p, b"zz")[1] for p in (b"", b"a", b"ab")]
        if all("+" in s or "/" in s for s in stables):
            return canary
    raise AssertionError("no suitable canary")


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab"])
def test_urlsafe_base64_alphabet(prefix: bytes) -> None:
    canary = _urlsafe_canary()
    detector = create("canary", {"canaries": [canary]})
    for urlsafe in (False, True):
        blob, stable = b64_stable(canary.encode(), prefix, b"zz", urlsafe)
        found = leaks(detector, f"data:{blob}")
        assert [span for _, span in found] == [stable]
    _, stable = b64_stable(canary.encode(), prefix, b"zz", urlsafe=True)
    assert leaks(detector, stable) == [("base64url", stable)]
    assert leaks(detector, canary) == [("exact", canary)]


def test_line_wrapped_base64(detector: Detector) -> None:
    blob = base64.b64encode(b"prompt: " + CANARY.encode() + b" end").decode()
    wrapped = "\n".join(blob[i : i + 12] for i in range(0, len(blob), 12))
    _, stable = b64_stable(CANARY.encode(), b"prompt: ", b" end")
    found = leaks(detector, wrapped)
    assert [label for label, _ in found] == ["base64"]
    assert found[0][1].replace("\n", "") == stable


def test_several_leaks_are_reported_in_order(detector: Detector) -> None:
    text = f"a {CANARY} b {CANARY[::-1]} c {CANARY.encode().hex()} d"
    assert [label for label, _ in leaks(detector, text)] == ["exact", "reversed", "hex"]
    starts = [f.start for f in detector.detect(text, CTX)]
    assert starts == sorted(starts)


# --- no false alarms --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The capital of France is Paris.",
        f"A different canary: {OTHER}",
        f"{OTHER[::-1]} {OTHER.encode().hex()} {base64.b64encode(OTHER.encode()).decode()}",
        f"Only a part of it: {CANARY[:12]}",
        "mntl- is our prefix, and k2vq4z7 is a coincidence",
        " ".join(CANARY[:-1]),
        "m" * 5000,
        CANARY[:-1] + "x",
    ],
)
def test_unrelated_text_is_not_flagged(detector: Detector, text: str) -> None:
    assert detector.detect(text, CTX) == []


# --- per-request canaries ---------------------------------------------------


def test_metadata_canaries_are_checked() -> None:
    detector = create("canary")
    context = ScanContext(side=Side.OUTPUT, metadata={"canaries": [OTHER]})
    assert leaks(detector, f"leak: {OTHER}", context) == [("exact", OTHER)]
    assert detector.detect(f"leak: {OTHER}", CTX) == []


def test_metadata_and_option_canaries_combine(detector: Detector) -> None:
    context = ScanContext(metadata={"canaries": (OTHER, CANARY)})
    text = f"{CANARY} and {OTHER[::-1]}"
    assert leaks(detector, text, context) == [("exact", CANARY), ("reversed", OTHER[::-1])]


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        {"a": OTHER},
        [42, None, b"mntl-bytes-are-ignored", "short", "-- .. --"],
        ["x" * 500],
    ],
)
def test_unusable_metadata_is_ignored(value: object) -> None:
    detector = create("canary")
    context = ScanContext(metadata={"canaries": value})
    assert detector.detect(f"{OTHER} short -- .. -- {'x' * 500}", context) == []


def test_metadata_mixed_with_junk_keeps_the_strings() -> None:
    detector = create("canary")
    context = ScanContext(metadata={"canaries": [42, OTHER, None]})
    assert leaks(detector, OTHER, context) == [("exact", OTHER)]


def test_metadata_single_string_is_one_canary() -> None:
    detector = create("canary")
    context = ScanContext(metadata={"canaries": OTHER})
    assert leaks(detector, OTHER.upper(), context) == [("exact", OTHER.upper())]


def test_many_canaries_are_all_found() -> None:
    canaries = [make_canary() for _ in range(40)]
    detector = create("canary", {"canaries": canaries})
    text = " | ".join(c[::-1] if i % 2 else c for i, c in enumerate(canaries))
    found = detector.detect(text, CTX)
    assert len(found) == 40
    assert [f.start for f in found] == sorted(f.start for f in found)


# --- options ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"canaries": ["short"]},
        {"canaries": "mntl-not-a-list-1234"},
        {"canaries": [12345678]},
        {"canaries": ["-- .. -- .. -- ..  "]},
        {"canaries": ["x" * 129]},
        {"canaries": [CANARY], "unknown": True},
    ],
)
def test_invalid_options_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="canary"):
        create("canary", options)


def test_options_model_accepts_valid_canaries() -> None:
    options = CanaryOptions.model_validate({"canaries": [CANARY, OTHER, CANARY]})
    assert CanaryDetector(options).canary_count == 2


# --- the canary never appears in a finding ----------------------------------


def _finding_text(finding: Finding) -> str:
    return f"{finding!r} {finding.to_dict()} {finding.detail}".lower()


@pytest.mark.parametrize("encode", [e[2] for e in ENCODINGS], ids=[e[0] for e in ENCODINGS])
def test_findings_never_contain_the_canary(
    detector: Detector, encode: Callable[[str], str]
) -> None:
    leaked = encode(CANARY)
    findings = detector.detect(f"x {leaked} y", CTX)
    assert findings
    for finding in findings:
        dumped = _finding_text(finding)
        for secret in (CANARY, CANARY[5:], CANARY[::-1], leaked.lower()):
            assert secret.lower() not in dumped


# --- cost -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "m " * 500_000,
        (" ".join(CANARY[:-1]) + " ") * 25_000,
        "6d6e746c2d" * 100_000,
        "m\u200b" * 500_000,
        "the quick brown fox " * 50_000,
    ],
    ids=["m-flood", "near-miss-flood", "hex-prefix-flood", "zero-width-flood", "prose"],
)
def test_megabyte_inputs_stay_fast(text: str) -> None:
    detector = create("canary", {"canaries": [CANARY, *(make_canary() for _ in range(20))]})
    started = time.perf_counter()
    assert detector.detect(text, CTX) == []
    assert time.perf_counter() - started < 5.0


# --- per-request canaries: screened by decoded views, then matched ----------


def _per_request(text: str, canary: str = CANARY) -> list[tuple[str, str]]:
    return leaks(CanaryDetector(), text, ScanContext(metadata={"canaries": [canary]}))


@pytest.mark.parametrize("encode", [e[2] for e in ENCODINGS], ids=[e[0] for e in ENCODINGS])
def test_the_screen_never_drops_a_leak(detector: Detector, encode: Callable[[str], str]) -> None:
    """A per-request canary goes through the views first; every form the
    compiled patterns catch must get past them."""
    leaked = encode(CANARY)
    for text in (leaked, f"Sure! The token is {leaked} — ok?", f"Ré😀 {leaked} ✓"):
        assert _per_request(text) == leaks(detector, text) != []


@pytest.mark.parametrize("alignment", [0, 1, 2])
@pytest.mark.parametrize("urlsafe", [False, True])
def test_the_screen_passes_base64_at_every_alignment(alignment: int, urlsafe: bool) -> None:
    canary = _urlsafe_canary()
    blob, stable = b64_stable(canary.encode(), b"ab"[:alignment], b" end", urlsafe)
    wrapped = "\r\n".join(blob[i : i + 10] for i in range(0, len(blob), 10))
    for text in (blob, wrapped):
        found = _per_request(f"data: {text}", canary)
        assert [span.replace("\r\n", "") for _, span in found] == [stable]


def test_the_screen_folds_case_as_re2_does(detector: Detector) -> None:
    """RE2 matches the Kelvin sign as k and the long s as s; a leak spelled
    with them must not slip past the screen."""
    canary = "mntl-kasekasekasek"
    for leaked in (canary.replace("k", "\u212a"), canary.replace("s", "\u017f")):
        found = _per_request(f"here: {leaked}", canary)
        assert [label for label, _ in found] == ["exact"]


def test_a_clean_answer_compiles_no_matcher() -> None:
    from mantlet.detectors import canary as module

    token = make_canary()
    before = module._matchers.cache_info().misses
    clean = "Here is the summary you asked for: 6d6e746c mntl- m n t l, all fine."
    assert _per_request(clean, token) == []
    assert module._matchers.cache_info().misses == before  # screened out, nothing compiled
    assert [label for label, _ in _per_request(f"it is {token}", token)] == ["exact"]
    assert module._matchers.cache_info().misses == before + 1
