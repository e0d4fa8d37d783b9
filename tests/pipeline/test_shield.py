from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import copy
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from mantlet.core.types import (
    Action,
    DetectorReport,
    Finding,
    PartKind,
    RunStatus,
    ScanContext,
    Side,
    Verdict,
)
from mantlet.errors import DetectorError, InvalidInputError, PolicyError
from mantlet.pipeline.runner import GIL_BOUND_INLINE_CHARS, INLINE_CHARS
from mantlet.pipeline.shield import Shield
from mantlet.policy import Policy

TOKEN_RULE = {"kind": "TOKEN", "pattern": "tok-[0-9]{4}"}

Check = Callable[..., Verdict]


def regex(*rules: Mapping[str, Any], **settings: Any) -> dict[str, Any]:
    """Settings for the regex detector, redacting by default."""
    return {"action": "redact", "options": {"patterns": list(rules or [TOKEN_RULE])}, **settings}


def policy(**detectors: Any) -> dict[str, Any]:
    return {"detectors": detectors}


@pytest.fixture(params=["sync", "async"])
def check(request: pytest.FixtureRequest) -> Check:
    """Runs a check through the sync or the async entry point."""

    def run(shield: Shield, content: Any, *, side: Side = Side.INPUT, **kwargs: Any) -> Verdict:
        if request.param == "sync":
            method = shield.check_input if side is Side.INPUT else shield.check_output
            return method(content, **kwargs)
        amethod = shield.acheck_input if side is Side.INPUT else shield.acheck_output
        return asyncio.run(amethod(content, **kwargs))

    return run


def report(verdict: Verdict, name: str) -> DetectorReport:
    [found] = [r for r in verdict.reports if r.detector == name]
    return found


def public_record(verdict: Verdict) -> str:
    """What goes to logs and audit: the verdict minus the sanitized payload."""
    out = verdict.to_dict()
    for key in ("sanitized_text", "sanitized_messages", "sanitized_documents", "sanitized_fields"):
        out.pop(key, None)
    return json.dumps(out)


# -- plain text ---------------------------------------------------------------------


@pytest.mark.parametrize("side", [Side.INPUT, Side.OUTPUT])
def test_clean_text_is_allowed(make_shield, check: Check, side: Side) -> None:
    shield = make_shield(policy(regex=regex()))
    verdict = check(shield, "nothing to see, tok-123 is too short", side=side)
    assert verdict.action is Action.ALLOW
    assert not verdict.blocked
    assert verdict.side is side
    assert verdict.findings == ()
    assert verdict.sanitized_text == "nothing to see, tok-123 is too short"
    assert verdict.sanitized_messages is None
    assert [(r.detector, r.status, r.findings) for r in verdict.reports] == [
        ("regex", RunStatus.OK, 0)
    ]


def test_redaction_uses_stable_placeholders(make_shield, check: Check) -> None:
    shield = make_shield(policy(regex=regex()))
    verdict = check(shield, "a tok-1111 b tok-2222 c tok-1111")
    assert verdict.action is Action.REDACT
    assert verdict.sanitized_text == "a <TOKEN_1> b <TOKEN_2> c <TOKEN_1>"
    assert [(f.start, f.end) for f in verdict.findings] == [(2, 10), (13, 21), (24, 32)]
    assert {(f.detector, f.kind, f.location, f.action) for f in verdict.findings} == {
        ("regex", "TOKEN", "text", Action.REDACT)
    }
    assert report(verdict, "regex").findings == 3


def test_verdict_record_never_contains_the_detected_value(make_shield, check: Check) -> None:
    shield = make_shield(policy(regex=regex(action="flag")))
    verdict = check(shield, "secret tok-8642 here")
    assert verdict.action is Action.FLAG
    assert "tok-8642" not in public_record(verdict)
    assert verdict.sanitized_text == "secret tok-8642 here"  # flag does not redact


def test_action_per_kind_and_most_severe_wins(make_shield, check: Check) -> None:
    rules = (TOKEN_RULE, {"kind": "BAD", "pattern": "forbidden"})
    shield = make_shield(policy(regex=regex(*rules, action="flag", actions={"BAD": "block"})))
    both = check(shield, "tok-0001 forbidden")
    assert both.action is Action.BLOCK
    assert {f.kind: f.action for f in both.findings} == {"TOKEN": Action.FLAG, "BAD": Action.BLOCK}
    assert check(shield, "tok-0001 fine").action is Action.FLAG
    assert check(shield, "forbidden").blocked


def test_threshold_filters_low_scores(make_shield, check: Check) -> None:
    rules = (
        {"kind": "LOW", "pattern": "low", "score": 0.49},
        {"kind": "EDGE", "pattern": "edge", "score": 0.5},
    )
    shield = make_shield(policy(regex=regex(*rules, threshold=0.5)))
    verdict = check(shield, "low edge")
    assert [f.kind for f in verdict.findings] == ["EDGE"]  # equal to threshold is kept
    assert verdict.sanitized_text == "low <EDGE_1>"
    assert report(verdict, "regex").findings == 1  # kept findings, not raw ones


def test_overlapping_spans_are_merged_into_one_region(make_shield, check: Check) -> None:
    rules = (
        {"kind": "KEY", "pattern": "key-[a-z]+-[0-9]+"},
        {"kind": "NUMBER", "pattern": "[0-9]{3,}"},
    )
    shield = make_shield(policy(regex=regex(*rules, actions={"NUMBER": "block"})))
    verdict = check(shield, "use key-ab-12345 now")
    assert len(verdict.findings) == 2  # both findings are reported...
    # ...but the text gets one region, named after the most severe finding.
    assert verdict.sanitized_text == "use <NUMBER_1> now"
    assert verdict.blocked


def test_overlaps_across_detectors_are_merged(make_shield, register_detector, check) -> None:
    # "token to": overlaps the start of the regex match "tok-1234" at 6..14.
    name = register_detector("test_overlap", lambda text, ctx: [Finding("x", "WORD", 0, 8, 0.9)])
    shield = make_shield(policy(regex=regex(), **{name: {"action": "redact"}}))
    verdict = check(shield, "token tok-1234!")
    assert verdict.sanitized_text == "<TOKEN_1>!"  # regex score 1.0 beats 0.9
    assert {f.detector for f in verdict.findings} == {"regex", "test_overlap"}


def test_mask_redaction_keeps_length(make_shield, check: Check) -> None:
    shield = make_shield(policy(regex=regex(redaction="mask")))
    verdict = check(shield, "id tok-1234 and tok-1234")
    assert verdict.sanitized_text == "id ******** and ********"


def test_remove_redaction_with_invisible_text(make_shield, check: Check) -> None:
    settings = {"action": "redact", "redaction": "remove", "actions": {"TAG_CHARACTERS": "block"}}
    shield = make_shield(policy(invisible_text=settings))
    verdict = check(shield, "pass\u200b\u200cword \u202eok")
    assert verdict.action is Action.REDACT
    assert verdict.sanitized_text == "password ok"
    assert {f.kind for f in verdict.findings} == {"ZERO_WIDTH", "BIDI_CONTROL"}
    smuggled = check(shield, "hi" + "".join(chr(0xE0000 + ord(c)) for c in "run rm"))
    assert smuggled.blocked
    assert smuggled.sanitized_text == "hi"


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c\u200d", "\u00ad", "\u2066", "\U000e0020"])
def test_a_value_split_by_invisible_characters_is_still_found(
    make_shield, check: Check, invisible: str
) -> None:
    """Removing the invisible characters would otherwise hand the upstream the
    value whole: the other detectors see the text without them."""
    remove = {"action": "redact", "redaction": "remove"}
    shield = make_shield(policy(regex=regex(), invisible_text=remove))
    verdict = check(shield, f"id tok-{invisible}12{invisible}34 end")
    assert verdict.sanitized_text == "id <TOKEN_1> end"
    [token] = [f for f in verdict.findings if f.kind == "TOKEN"]
    assert (token.start, token.end) == (3, 11 + 2 * len(invisible))  # the original's offsets
    assert {f.kind for f in verdict.findings} - {"TOKEN"}  # the characters are reported too


@pytest.mark.parametrize(
    "written", ["tok-\uff11\uff12\uff13\uff14", "tok-\U0001d7cf\U0001d7d0\U0001d7d1\U0001d7d2"]
)
def test_compatibility_forms_are_read_as_a_model_reads_them(make_shield, check, written) -> None:
    """Fullwidth or mathematical digits are digits to a model; to a regex,
    only once folded."""
    shield = make_shield(policy(regex=regex()))
    verdict = check(shield, f"id {written} end")
    assert verdict.sanitized_text == "id <TOKEN_1> end"
    [token] = verdict.findings
    assert (token.start, token.end) == (3, 3 + len(written))


@pytest.mark.parametrize("encode", [lambda t: base64.b64encode(t).decode(), bytes.hex])
def test_a_value_inside_base64_or_hex_redacts_the_whole_segment(make_shield, check, encode):
    """A model decodes base64 as readily as it reads: a key pasted from a
    Kubernetes Secret is still the key."""
    segment = encode(b"token tok-4242 inside")
    shield = make_shield(policy(regex=regex()))
    verdict = check(shield, f"data: {segment} end")
    assert verdict.sanitized_text == "data: <TOKEN_1> end"
    [token] = verdict.findings
    assert (token.start, token.end) == (6, 6 + len(segment))
    assert token.detail.endswith(("(in base64)", "(in hex)"))


def test_a_value_spelled_out_with_spaces_is_found(make_shield, check: Check) -> None:
    rule = {"kind": "ACCOUNT", "pattern": "ZZ[0-9]{10}"}
    shield = make_shield(policy(regex=regex(rule)))
    verdict = check(shield, "account Z Z 1 2 3 4 5 6 7 8 9 0, thanks")
    assert verdict.sanitized_text == "account <ACCOUNT_1>, thanks"


def test_detectors_that_read_invisible_characters_see_them(make_shield, register_detector, check):
    plain = register_detector("test_plain", lambda text, ctx: [])
    raw = register_detector("test_raw", lambda text, ctx: [], reads_original=True)
    shield = make_shield(policy(**{plain: {}, raw: {}}))
    check(shield, "a\u200bb")
    seen = {
        name: [text for text, _ in register_detector.instances[name].calls] for name in (plain, raw)
    }
    assert seen == {plain: ["ab"], raw: ["a\u200bb"]}


def test_findings_are_sorted_by_location_then_offset(make_shield, check: Check) -> None:
    rules = ({"kind": "B", "pattern": "bbb"}, {"kind": "A", "pattern": "aaa"})
    shield = make_shield(policy(regex=regex(*rules)))
    verdict = check(shield, "bbb aaa bbb")
    assert [(f.kind, f.start) for f in verdict.findings] == [("B", 0), ("A", 4), ("B", 8)]


# -- message lists --------------------------------------------------------------------


def _messages() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "system tok-0001"},
        {"role": "user", "content": "user tok-0002"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "item tok-0003"},
                {"type": "image_url", "image_url": {"url": "https://example.com/tok-9999.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "tok-0001"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "tool says tok-0004"},
        {"role": "assistant", "content": "clean answer"},
    ]


def test_every_part_of_a_message_list_is_scanned_and_rebuilt(make_shield, check: Check) -> None:
    shield = make_shield(policy(regex=regex()))
    messages = _messages()
    original = copy.deepcopy(messages)
    verdict = check(shield, messages, documents=["doc tok-0005", "clean doc", "tok-0002"])

    assert verdict.action is Action.REDACT
    assert {f.location for f in verdict.findings} == {
        "messages[0].content",
        "messages[1].content",
        "messages[2].content[0].text",
        "messages[2].content[1]",  # the image: recorded as unscanned, allowed by default
        "messages[3].tool_calls[0].function.arguments",
        "messages[4].content",
        "documents[0]",
        "documents[2]",
    }
    [media] = [f for f in verdict.findings if f.kind == "UNSCANNED_MEDIA"]
    assert (media.detector, media.action) == ("media", Action.ALLOW)
    expected = copy.deepcopy(original)
    expected[0]["content"] = "system <TOKEN_1>"
    expected[1]["content"] = "user <TOKEN_2>"
    expected[2]["content"][0]["text"] = "item <TOKEN_3>"
    expected[3]["tool_calls"][0]["function"]["arguments"] = '{"q": "<TOKEN_1>"}'
    expected[4]["content"] = "tool says <TOKEN_4>"
    assert verdict.sanitized_messages == expected  # structure kept, image URL untouched
    assert verdict.sanitized_documents == ["doc <TOKEN_5>", "clean doc", "<TOKEN_2>"]
    assert verdict.sanitized_text is None
    assert messages == original  # the caller's list is never modified


def test_messages_without_documents_have_no_sanitized_documents(make_shield, check) -> None:
    shield = make_shield(policy(regex=regex()))
    verdict = check(shield, [{"role": "user", "content": "hi"}])
    assert verdict.action is Action.ALLOW
    assert verdict.sanitized_messages == [{"role": "user", "content": "hi"}]
    assert verdict.sanitized_documents is None


def test_request_fields_are_scanned_and_rebuilt(make_shield, register_detector, check) -> None:
    seen: list[tuple[str, PartKind]] = []

    def spy(text: str, context: ScanContext) -> list[Finding]:
        seen.append((text, context.part))
        return []

    name = register_detector("test_field_spy", spy)
    shield = make_shield(policy(regex=regex(), **{name: {}}))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "fetch",
                "description": "Fetch with token tok-0001.",
                "parameters": {"properties": {"tok-0002": {"type": "string"}}},
            },
        }
    ]
    fields = {"tools": tools, "prediction": {"content": "tok-0003"}, "logit_bias": {"1": -1}}
    original = copy.deepcopy(fields)
    verdict = check(shield, [{"role": "user", "content": "hi"}], fields=fields)

    assert verdict.action is Action.REDACT
    assert {f.location for f in verdict.findings} == {
        "tools[0].function.description",
        "tools[0].function.parameters.properties[#0].key",
        "prediction.content",
    }
    function = verdict.sanitized_fields["tools"][0]["function"]
    assert function["description"] == "Fetch with token <TOKEN_1>."
    assert function["parameters"]["properties"] == {"<TOKEN_2>": {"type": "string"}}
    assert verdict.sanitized_fields["prediction"] == {"content": "<TOKEN_3>"}
    assert verdict.sanitized_fields["logit_bias"] == {"1": -1}
    assert fields == original
    assert ("Fetch with token tok-0001.", PartKind.TOOL_DEFINITION) in seen
    assert ("tok-0003", PartKind.PROMPT) in seen
    assert "tok-000" not in public_record(verdict)


def test_a_text_repeated_in_one_context_is_scanned_once(make_shield, register_detector, check):
    calls: list[str] = []

    def spy(text: str, context: ScanContext) -> list[Finding]:
        calls.append(text)
        return [Finding("x", "TOKEN", 0, 3, 1.0)] if text.startswith("tok") else []

    name = register_detector("test_repeat_spy", spy)
    shield = make_shield(policy(**{name: {"action": "redact"}}))
    messages = [
        {"role": "user", "content": "tok a"},
        {"role": "user", "content": "tok a"},
        {"role": "system", "content": "tok a"},  # another context: scanned again
    ]
    verdict = check(shield, messages, fields={"stop": ["tok a", "string", "string"]})
    assert sorted(calls) == ["string", "tok a", "tok a", "tok a"]
    assert [f.location for f in verdict.findings] == [
        "messages[0].content",
        "messages[1].content",
        "messages[2].content",
        "stop[0]",
    ]
    assert [m["content"] for m in verdict.sanitized_messages] == ["<TOKEN_1> a"] * 3


def test_fields_need_a_message_list(make_shield, check: Check) -> None:
    shield = make_shield(policy(regex=regex()))
    with pytest.raises(InvalidInputError, match="fields can only accompany a message list"):
        check(shield, "text", fields={"user": "u"})
    verdict = check(shield, [{"role": "user", "content": "hi"}])
    assert verdict.sanitized_fields is None


IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}


@pytest.mark.parametrize("media", ["allow", "flag", "block"])
def test_media_no_detector_reads_follows_the_policy(make_shield, check, media: str) -> None:
    shield = make_shield({"media": media, **policy(regex=regex())})
    content = [{"type": "text", "text": "what is this?"}, IMAGE]
    verdict = check(shield, [{"role": "user", "content": content}])
    assert verdict.action is Action(media)
    [finding] = verdict.findings
    assert (finding.kind, finding.location) == ("UNSCANNED_MEDIA", "messages[0].content[1]")
    assert verdict.to_dict()["findings"][0]["action"] == media


def test_media_cannot_be_redacted(make_shield) -> None:
    with pytest.raises(PolicyError, match="not redacted"):
        make_shield("version: 1\nmedia: redact\ndetectors: {}\n")


def test_strict_profile_blocks_media_and_balanced_records_it(check: Check) -> None:
    messages = [{"role": "user", "content": [IMAGE]}]
    with Shield.from_policy("strict") as strict, Shield.from_policy("balanced") as balanced:
        assert check(strict, messages).action is Action.BLOCK
        verdict = check(balanced, messages)
    assert verdict.action is Action.ALLOW
    assert [f.kind for f in verdict.findings] == ["UNSCANNED_MEDIA"]


def test_output_messages(make_shield, check: Check) -> None:
    shield = make_shield(policy(regex=regex()))
    verdict = check(shield, [{"role": "assistant", "content": "tok-4242"}], side=Side.OUTPUT)
    assert verdict.side is Side.OUTPUT
    assert verdict.sanitized_messages == [{"role": "assistant", "content": "<TOKEN_1>"}]


def test_function_call_arguments_are_scanned(make_shield, check: Check) -> None:
    shield = make_shield(policy(regex=regex()))
    msgs = [{"role": "assistant", "function_call": {"name": "f", "arguments": "tok-1000"}}]
    verdict = check(shield, msgs, side=Side.OUTPUT)
    assert [f.location for f in verdict.findings] == ["messages[0].function_call.arguments"]
    assert verdict.sanitized_messages == [
        {"role": "assistant", "function_call": {"name": "f", "arguments": "<TOKEN_1>"}}
    ]


@pytest.mark.parametrize(
    ("content", "documents", "message"),
    [
        pytest.param([{"role": "admin", "content": "x"}], None, "role must be", id="role"),
        pytest.param([{"role": "user", "content": 7}], None, "content must be", id="content"),
        pytest.param([{"role": "user"}, "x"], None, r"messages\[1\]", id="message-str"),
        pytest.param({"role": "user", "content": "x"}, None, "content must be", id="dict"),
        pytest.param(None, None, "content must be", id="none"),
        pytest.param(42, None, "content must be", id="int"),
        pytest.param("text", ["doc"], "documents can only accompany", id="text-with-docs"),
        pytest.param([{"role": "user", "content": "x"}], [b"doc"], r"documents\[0\]", id="doc"),
        pytest.param([], "a document", "documents must be a list", id="docs-str"),
    ],
)
def test_invalid_input_raises_before_any_detector_runs(
    make_shield, register_detector, check: Check, content: Any, documents: Any, message: str
) -> None:
    name = register_detector("test_spy", lambda text, ctx: [])
    shield = make_shield(policy(**{name: {}}))
    with pytest.raises(InvalidInputError, match=message):
        check(shield, content, documents=documents)
    assert register_detector.instances[name].calls == []


# -- what detectors are told ------------------------------------------------------------


def test_detectors_receive_part_context(make_shield, register_detector, check: Check) -> None:
    name = register_detector("test_ctx", lambda text, ctx: [])
    shield = make_shield(policy(**{name: {}}))
    check(shield, _messages(), documents=["doc", ""], tenant="acme")
    calls = register_detector.instances[name].calls
    seen = sorted((text, ctx.part, ctx.role) for text, ctx in calls)
    assert seen == sorted(
        [
            ("system tok-0001", PartKind.SYSTEM, "system"),
            ("user tok-0002", PartKind.PROMPT, "user"),
            ("item tok-0003", PartKind.PROMPT, "user"),
            ('{"q": "tok-0001"}', PartKind.TOOL_CALL, "assistant"),
            ("tool says tok-0004", PartKind.TOOL_OUTPUT, "tool"),
            ("clean answer", PartKind.COMPLETION, "assistant"),
            ("doc", PartKind.DOCUMENT, None),  # the empty document is not scanned
        ]
    )
    assert {(ctx.side, ctx.tenant) for _, ctx in calls} == {(Side.INPUT, "acme")}


def test_output_text_context(make_shield, register_detector, check: Check) -> None:
    name = register_detector("test_ctx_out", lambda text, ctx: [])
    shield = make_shield(policy(**{name: {}}))
    verdict = check(shield, "answer", side=Side.OUTPUT)
    [(text, ctx)] = register_detector.instances[name].calls
    assert text == "answer"
    assert (ctx.side, ctx.part, ctx.role, ctx.tenant) == (
        Side.OUTPUT,
        PartKind.COMPLETION,
        None,
        None,
    )
    assert report(verdict, name).status is RunStatus.OK


def test_empty_text_is_not_handed_to_detectors(make_shield, register_detector, check) -> None:
    name = register_detector("test_empty", lambda text, ctx: [])
    shield = make_shield(policy(**{name: {}}))
    verdict = check(shield, "")
    assert register_detector.instances[name].calls == []
    assert report(verdict, name).status is RunStatus.OK
    assert verdict.sanitized_text == ""


def test_detector_options_reach_the_factory(make_shield, register_detector) -> None:
    name = register_detector("test_options", lambda text, ctx: [])
    make_shield(policy(**{name: {"options": {"level": 3, "words": ["a"]}}}))
    assert register_detector.options_seen[name] == [{"level": 3, "words": ["a"]}]


def test_detector_name_and_location_are_set_by_the_pipeline(make_shield, register_detector):
    name = register_detector("test_names", lambda text, ctx: [Finding("liar", "K", 0, 1, 1.0)])
    shield = make_shield(policy(**{name: {"action": "flag"}}))
    [found] = shield.check_input([{"role": "user", "content": "x"}]).findings
    assert (found.detector, found.location, found.action) == (
        name,
        "messages[0].content",
        Action.FLAG,
    )


# -- concurrency --------------------------------------------------------------------------


def test_detectors_run_concurrently(make_shield, register_detector, check: Check) -> None:
    # Each detector waits for the other at the barrier: they can only both
    # finish if the pipeline runs them at the same time.
    barrier = threading.Barrier(2, timeout=5)

    def meet(text: str, ctx: ScanContext) -> list[Finding]:
        barrier.wait()
        return [Finding("x", "MET", 0, 1, 1.0)]

    a = register_detector("test_barrier_a", meet)
    b = register_detector("test_barrier_b", meet)
    settings = {"timeout_ms": 10_000, "action": "flag"}
    shield = make_shield(policy(**{a: settings, b: settings}))
    verdict = check(shield, "x")
    assert [(r.detector, r.status) for r in verdict.reports] == [
        (a, RunStatus.OK),
        (b, RunStatus.OK),
    ]
    assert verdict.action is Action.FLAG
    assert len(verdict.findings) == 2


async def test_async_checks_do_not_block_the_event_loop(make_shield, register_detector) -> None:
    # One detector instance, two concurrent checks: both detector calls must be
    # in flight together, which cannot happen if acheck_input blocked the loop.
    barrier = threading.Barrier(2, timeout=5)

    def meet(text: str, ctx: ScanContext) -> list[Finding]:
        barrier.wait()
        return []

    name = register_detector("test_loop", meet)
    shield = make_shield(policy(**{name: {"timeout_ms": 10_000}}))
    first, second = await asyncio.gather(shield.acheck_input("one"), shield.acheck_input("two"))
    assert report(first, name).status is RunStatus.OK
    assert report(second, name).status is RunStatus.OK


@pytest.mark.parametrize(
    ("flag", "limit"), [("light", INLINE_CHARS), ("gil_bound", GIL_BOUND_INLINE_CHARS)]
)
@pytest.mark.parametrize("longer", [False, True])
def test_light_and_gil_bound_detectors_run_inline_on_short_texts_only(
    make_shield, register_detector, check: Check, flag: str, limit: int, longer: bool
) -> None:
    threads: dict[str, str] = {}

    def where(label: str) -> Callable[[str, ScanContext], list[Finding]]:
        def detect(text: str, ctx: ScanContext) -> list[Finding]:
            threads[label] = threading.current_thread().name
            return [Finding("x", "SEEN", 0, 1, 1.0)]

        return detect

    cheap = register_detector("test_cheap", where("cheap"), **{flag: True})
    heavy = register_detector("test_heavy", where("heavy"))
    shield = make_shield(policy(**{cheap: {"action": "flag"}, heavy: {"action": "flag"}}))
    size = limit + 1 if longer else 100
    for side in (Side.INPUT, Side.OUTPUT):
        threads.clear()
        verdict = check(shield, "x" * size, side=side)
        assert [(r.detector, r.status) for r in verdict.reports] == [
            (cheap, RunStatus.OK),
            (heavy, RunStatus.OK),
        ]
        caller = threading.current_thread().name
        assert threads["heavy"] != caller  # it said neither light nor GIL-bound
        assert (threads["cheap"] == caller) is not longer


def test_concurrent_checks_on_one_shield_do_not_share_state(make_shield) -> None:
    shield = make_shield(policy(regex=regex()))
    texts = [f"a tok-{i:04d} b tok-{i:04d} c tok-9999" for i in range(40)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = list(pool.map(shield.check_input, texts))
    for verdict in verdicts:
        # Placeholder numbering restarts for every check.
        assert verdict.sanitized_text == "a <TOKEN_1> b <TOKEN_1> c <TOKEN_2>"


# -- timeouts ------------------------------------------------------------------------------


def _slow(release: threading.Event) -> Callable[[str, ScanContext], list[Finding]]:
    def detect(text: str, ctx: ScanContext) -> list[Finding]:
        release.wait(5)
        return [Finding("x", "LATE", 0, 1, 1.0)]

    return detect


def test_timeout_blocks_by_default(make_shield, register_detector, release, check) -> None:
    name = register_detector("test_slow", _slow(release))
    shield = make_shield(policy(regex=regex(), **{name: {"timeout_ms": 50}}))
    verdict = check(shield, "tok-1234")
    slow = report(verdict, name)
    assert slow.status is RunStatus.TIMEOUT
    assert slow.reason == "exceeded 50 ms"
    assert slow.findings == 0
    assert verdict.action is Action.BLOCK
    assert verdict.errors == {name: "exceeded 50 ms"}
    # The other detector still ran and its redaction still applies.
    assert report(verdict, "regex").status is RunStatus.OK
    assert verdict.sanitized_text == "<TOKEN_1>"
    assert all(f.kind != "LATE" for f in verdict.findings)


def test_timeout_with_on_error_allow_does_not_block(
    make_shield, register_detector, release, check
) -> None:
    name = register_detector("test_slow_open", _slow(release))
    settings = {"timeout_ms": 50, "on_error": "allow"}
    shield = make_shield(policy(regex=regex(), **{name: settings}))
    verdict = check(shield, "tok-1234")
    assert report(verdict, name).status is RunStatus.TIMEOUT
    assert verdict.action is Action.REDACT  # from regex only
    assert check(shield, "nothing").action is Action.ALLOW


def test_policy_wide_timeout_applies(make_shield, register_detector, release, check) -> None:
    name = register_detector("test_slow_default", _slow(release))
    shield = make_shield({"timeout_ms": 30, "detectors": {name: {}}})
    verdict = check(shield, "x")
    assert report(verdict, name).status is RunStatus.TIMEOUT
    assert report(verdict, name).reason == "exceeded 30 ms"
    assert verdict.blocked


# 8 MiB that the pattern below must scan end to end (8 388 matches): far more
# work than 1 ms allows, so the real regex detector times out.
BIG_TEXT = "a" * (8 * 1024 * 1024)
BIG_RULE = {"kind": "RUN", "pattern": "a{1000}"}


@pytest.mark.parametrize(
    ("on_error", "expected"), [("block", Action.BLOCK), ("allow", Action.ALLOW)]
)
def test_real_regex_detector_times_out(make_shield, check, on_error, expected) -> None:
    shield = make_shield(policy(regex=regex(BIG_RULE, timeout_ms=1, on_error=on_error)))
    verdict = check(shield, BIG_TEXT)
    assert report(verdict, "regex").status is RunStatus.TIMEOUT
    assert verdict.action is expected
    assert verdict.findings == ()
    assert verdict.sanitized_text == BIG_TEXT


# -- errors ---------------------------------------------------------------------------------


def test_exception_fails_closed_without_leaking_text(make_shield, register_detector, check):
    def explode(text: str, ctx: ScanContext) -> list[Finding]:
        raise RuntimeError(f"could not parse {text!r}")

    name = register_detector("test_boom", explode)
    shield = make_shield(policy(regex=regex(), **{name: {}}))
    verdict = check(shield, "password=hunter2")
    boom = report(verdict, name)
    assert boom.status is RunStatus.ERROR
    assert boom.reason == "RuntimeError"
    assert verdict.blocked
    assert verdict.errors == {name: "RuntimeError"}
    assert "hunter2" not in public_record(verdict)
    assert report(verdict, "regex").status is RunStatus.OK  # one failure does not stop others


def test_exception_with_on_error_allow(make_shield, register_detector, check) -> None:
    name = register_detector("test_boom_open", lambda text, ctx: 1 / 0)
    shield = make_shield(policy(**{name: {"on_error": "allow"}}))
    verdict = check(shield, "x")
    assert report(verdict, name).status is RunStatus.ERROR
    assert report(verdict, name).reason == "ZeroDivisionError"
    assert verdict.action is Action.ALLOW


def test_mantlet_errors_keep_their_message(make_shield, register_detector, check) -> None:
    def fail(text: str, ctx: ScanContext) -> list[Finding]:
        raise DetectorError("model file missing")

    name = register_detector("test_own_error", fail)
    shield = make_shield(policy(**{name: {}}))
    verdict = check(shield, "x")
    assert report(verdict, name).reason == "DetectorError: model file missing"
    assert verdict.blocked


def test_error_on_a_later_part_discards_earlier_findings(make_shield, register_detector, check):
    def second_part_fails(text: str, ctx: ScanContext) -> list[Finding]:
        if text == "boom":
            raise ValueError(text)
        return [Finding("x", "HIT", 0, len(text), 1.0)]

    name = register_detector("test_partial", second_part_fails)
    shield = make_shield(policy(**{name: {"action": "redact"}}))
    msgs = [{"role": "user", "content": "fine"}, {"role": "user", "content": "boom"}]
    verdict = check(shield, msgs)
    assert report(verdict, name).status is RunStatus.ERROR
    assert verdict.findings == ()
    assert verdict.blocked


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        pytest.param(None, "list[Finding]", id="none"),
        pytest.param({}, "list[Finding]", id="dict"),
        pytest.param("K", "list[Finding]", id="str"),
        pytest.param([("K", 0, 1)], "list[Finding]", id="tuples"),
        pytest.param((Finding("x", "K", 0, 1, 1.0),), "list[Finding]", id="tuple-of-findings"),
        pytest.param([Finding("x", "K", 0, 1, 1.0), None], "list[Finding]", id="mixed"),
        pytest.param([Finding("x", "K", 3, 6, 1.0)], "span beyond the text", id="beyond"),
    ],
)
def test_garbage_results_are_errors(make_shield, register_detector, check, result, reason):
    name = register_detector("test_garbage", lambda text, ctx: result)
    shield = make_shield(policy(**{name: {"action": "flag"}}))
    verdict = check(shield, "abcd")
    garbage = report(verdict, name)
    assert garbage.status is RunStatus.ERROR
    assert reason in garbage.reason
    assert verdict.findings == ()
    assert verdict.blocked  # fail closed, even though the action is only "flag"


def test_span_exactly_at_the_end_is_fine(make_shield, register_detector, check) -> None:
    name = register_detector("test_edge_span", lambda text, ctx: [Finding("x", "K", 0, 4, 1.0)])
    shield = make_shield(policy(**{name: {"action": "redact"}}))
    verdict = check(shield, "abcd")
    assert report(verdict, name).status is RunStatus.OK
    assert verdict.sanitized_text == "<K_1>"


# -- skipped detectors -------------------------------------------------------------------------


def test_disabled_detector_is_skipped_and_never_built(make_shield, register_detector, check):
    name = register_detector("test_disabled", lambda text, ctx: 1 / 0)
    shield = make_shield(policy(regex=regex(), **{name: {"enabled": False}}))
    verdict = check(shield, "tok-1234")
    skipped = report(verdict, name)
    assert skipped.status is RunStatus.SKIPPED
    assert skipped.reason == "disabled by policy"
    assert name not in register_detector.instances
    assert verdict.action is Action.REDACT
    assert verdict.to_dict()["skipped"] == [name]
    assert name not in verdict.timings_ms
    assert [r.detector for r in verdict.reports] == ["regex", name]  # ran first, then skipped


def test_policy_can_restrict_a_detector_to_one_side(make_shield, check: Check) -> None:
    shield = make_shield(policy(regex=regex(sides="output")))
    on_input = check(shield, "tok-1234")
    assert report(on_input, "regex").status is RunStatus.SKIPPED
    assert report(on_input, "regex").reason == "not an input detector"
    assert on_input.action is Action.ALLOW
    assert on_input.sanitized_text == "tok-1234"
    on_output = check(shield, "tok-1234", side=Side.OUTPUT)
    assert report(on_output, "regex").status is RunStatus.OK
    assert on_output.sanitized_text == "<TOKEN_1>"


def test_detector_own_side_is_respected(make_shield, register_detector, check) -> None:
    name = register_detector("test_input_only", lambda text, ctx: [], sides=Side.INPUT)
    shield = make_shield(policy(**{name: {}}))
    verdict = check(shield, "answer", side=Side.OUTPUT)
    assert report(verdict, name).status is RunStatus.SKIPPED
    assert report(verdict, name).reason == "not an output detector"
    assert register_detector.instances[name].calls == []
    assert report(check(shield, "prompt"), name).status is RunStatus.OK


def test_policy_side_overrides_detector_side(make_shield, register_detector, check) -> None:
    name = register_detector("test_side_override", lambda text, ctx: [], sides=Side.INPUT)
    shield = make_shield(policy(**{name: {"sides": "output"}}))
    assert report(check(shield, "x", side=Side.OUTPUT), name).status is RunStatus.OK
    assert report(check(shield, "x"), name).status is RunStatus.SKIPPED


def test_policy_without_detectors_allows(make_shield, check: Check) -> None:
    verdict = check(make_shield({}), "anything tok-1234")
    assert verdict.action is Action.ALLOW
    assert verdict.reports == ()


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"patterns": [{"kind": "lower", "pattern": "x"}]}, id="bad-kind"),
        pytest.param({"patterns": [{"kind": "K", "pattern": "(?=x)"}]}, id="lookahead"),
        pytest.param({"patterns": [{"kind": "K", "pattern": "("}]}, id="syntax"),
        pytest.param({"pattern": "x"}, id="unknown-option"),
    ],
)
def test_bad_detector_options_are_policy_errors(options: dict[str, Any]) -> None:
    validated = Policy.model_validate(
        {"name": "team", "detectors": {"regex": {"options": options}}}
    )
    with pytest.raises(PolicyError) as info:
        Shield(validated)
    assert info.value.source == "<policy team>"
    [(path, message)] = info.value.problems
    assert path == "detectors.regex.options"
    assert "regex" in message


def test_from_policy_accepts_a_policy_or_a_path(tmp_path: Path) -> None:
    validated = Policy.model_validate(policy(regex=regex()))
    with Shield.from_policy(validated) as shield:
        assert shield.policy is validated
        assert shield.check_input("tok-1234").sanitized_text == "<TOKEN_1>"
    path = tmp_path / "p.yaml"
    path.write_text(
        "detectors:\n  regex:\n    action: block\n    options:\n      patterns:\n"
        "        - {kind: TOKEN, pattern: 'tok-[0-9]{4}'}\n",
        encoding="utf-8",
    )
    with Shield.from_policy(path) as shield:
        assert shield.check_input("tok-1234").blocked
    with pytest.raises(PolicyError):
        Shield.from_policy(tmp_path / "missing.yaml")


# -- shipped profiles (need every built-in detector, "secrets" included) ----------------


@pytest.mark.parametrize(
    ("profile", "text", "action", "sanitized"),
    [
        ("balanced", "hello world", Action.ALLOW, "hello world"),
        ("balanced", "pa\u200bss", Action.REDACT, "pass"),
        ("balanced", "hi\U000e0041", Action.BLOCK, "hi"),
        (
            "strict",
            "the cat sat on the\u200b mat",
            Action.BLOCK,
            "the cat sat on the<ZERO_WIDTH_1> mat",
        ),
        ("permissive", "pa\u200bss", Action.ALLOW, "pa\u200bss"),  # 0.6 < threshold 0.7
        ("permissive", "a\u202eb", Action.FLAG, "a\u202eb"),
    ],
)
def test_shipped_profiles_end_to_end(
    check: Check, profile: str, text: str, action: Action, sanitized: str
) -> None:
    with Shield.from_policy(profile) as shield:
        verdict = check(shield, text)
    assert verdict.action is action
    assert verdict.sanitized_text == sanitized
    expected = {
        "secrets": RunStatus.OK,
        "invisible_text": RunStatus.OK,
        "injection": RunStatus.OK,
        "canary": RunStatus.SKIPPED,  # an output-side detector
        "autoload_urls": RunStatus.SKIPPED,  # output side too
    }
    if profile == "balanced":
        expected["pii"] = RunStatus.OK  # balanced redacts PII in prompts
    assert {r.detector: r.status for r in verdict.reports} == expected


def test_default_shield_uses_the_balanced_profile() -> None:
    with Shield.from_policy() as shield:
        assert shield.policy.name == "balanced"
