from __future__ import annotations

import copy
from typing import Any

import pytest

from mantlet.core.types import PartKind, Side
from mantlet.errors import InvalidInputError
from mantlet.pipeline.parts import (
    TextPart,
    field_parts,
    message_parts,
    rebuild_fields,
    rebuild_messages,
    text_parts,
)


@pytest.mark.parametrize(
    ("side", "kind"), [(Side.INPUT, PartKind.PROMPT), (Side.OUTPUT, PartKind.COMPLETION)]
)
def test_text_parts(side: Side, kind: PartKind) -> None:
    assert text_parts("hello", side) == [TextPart("text", "hello", kind, None, ())]


@pytest.mark.parametrize("value", [b"bytes", None, 3, ["a"]])
def test_text_parts_requires_a_string(value: object) -> None:
    with pytest.raises(InvalidInputError, match="text must be a string"):
        text_parts(value, Side.INPUT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("role", "kind"),
    [
        ("system", PartKind.SYSTEM),
        ("developer", PartKind.SYSTEM),
        ("user", PartKind.PROMPT),
        ("assistant", PartKind.COMPLETION),
        ("tool", PartKind.TOOL_OUTPUT),
        ("function", PartKind.TOOL_OUTPUT),
    ],
)
def test_roles_map_to_part_kinds(role: str, kind: PartKind) -> None:
    [part] = message_parts([{"role": role, "content": "hi"}])
    assert part == TextPart("messages[0].content", "hi", kind, role, (0, "content"))


def test_every_text_bearing_field_is_a_part() -> None:
    messages = [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "t0"},
                {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
                {"type": "input_text", "text": "t2"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "o0"},
                {"type": "refusal", "refusal": "r1"},
            ],
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "a2"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "result"},
        {"role": "assistant", "content": None, "function_call": {"name": "h", "arguments": "fc"}},
    ]
    parts = message_parts(messages, ["doc0", "doc1"])
    got = [(p.location, p.text, p.kind, p.role, p.path) for p in parts]
    assert got == [
        ("messages[0].content", "sys", PartKind.SYSTEM, "system", (0, "content")),
        ("messages[1].content[0].text", "t0", PartKind.PROMPT, "user", (1, "content", 0, "text")),
        ("messages[1].content[1]", "", PartKind.MEDIA, "user", (1, "content", 1)),  # no text
        ("messages[1].content[2].text", "t2", PartKind.PROMPT, "user", (1, "content", 2, "text")),
        (
            "messages[2].content[0].text",
            "o0",
            PartKind.COMPLETION,
            "assistant",
            (2, "content", 0, "text"),
        ),
        (
            "messages[2].content[1].refusal",
            "r1",
            PartKind.COMPLETION,
            "assistant",
            (2, "content", 1, "refusal"),
        ),
        (
            "messages[2].tool_calls[0].function.arguments",
            "{}",
            PartKind.TOOL_CALL,
            "assistant",
            (2, "tool_calls", 0, "function", "arguments"),
        ),
        (
            "messages[2].tool_calls[1].function.arguments",
            "a2",
            PartKind.TOOL_CALL,
            "assistant",
            (2, "tool_calls", 1, "function", "arguments"),
        ),
        ("messages[3].content", "result", PartKind.TOOL_OUTPUT, "tool", (3, "content")),
        (
            "messages[4].function_call.arguments",
            "fc",
            PartKind.TOOL_CALL,
            "assistant",
            (4, "function_call", "arguments"),
        ),
        ("documents[0]", "doc0", PartKind.DOCUMENT, None, ("documents", 0)),
        ("documents[1]", "doc1", PartKind.DOCUMENT, None, ("documents", 1)),
    ]


def test_missing_or_null_content_yields_no_part() -> None:
    assert message_parts([{"role": "assistant"}, {"role": "user", "content": None}]) == []


def test_empty_inputs() -> None:
    assert message_parts([]) == []
    assert message_parts((), ()) == []
    assert [p.text for p in message_parts([{"role": "user", "content": ""}])] == [""]


def test_tool_call_without_arguments_is_an_empty_part() -> None:
    [part] = message_parts([{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}])
    assert part.text == ""
    assert part.kind is PartKind.TOOL_CALL


def test_function_call_without_arguments_is_ignored() -> None:
    assert message_parts([{"role": "assistant", "function_call": {"name": "f"}}]) == []


INVALID: list[Any] = [
    pytest.param("user: hi", None, "messages must be a list", id="messages-str"),
    pytest.param(b"[]", None, "messages must be a list", id="messages-bytes"),
    pytest.param({"role": "user"}, None, "messages must be a list", id="messages-dict"),
    pytest.param(None, None, "messages must be a list", id="messages-none"),
    pytest.param(["hi"], None, r"messages\[0\] must be an object", id="message-str"),
    pytest.param([{"content": "x"}], None, r"messages\[0\]\.role must be one of", id="no-role"),
    pytest.param(
        [{"role": "user", "content": "a"}, {"role": "admin", "content": "x"}],
        None,
        r"messages\[1\]\.role must be one of",
        id="unknown-role",
    ),
    pytest.param(
        [{"role": "User", "content": "x"}], None, r"\.role must be one of", id="role-case"
    ),
    pytest.param([{"role": ["user"], "content": "x"}], None, r"\.role must be", id="role-list"),
    pytest.param([{"role": 1, "content": "x"}], None, r"\.role must be", id="role-int"),
    pytest.param(
        [{"role": "user", "content": 5}],
        None,
        r"messages\[0\]\.content must be a string, a list or null",
        id="content-int",
    ),
    pytest.param(
        [{"role": "user", "content": {"text": "x"}}], None, r"\.content must be", id="content-dict"
    ),
    pytest.param(
        [{"role": "user", "content": ["x"]}],
        None,
        r"messages\[0\]\.content\[0\] must be an object",
        id="item-str",
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": "video", "video": "x"}]}],
        None,
        r"messages\[0\]\.content\[0\]\.type 'video' is not supported",
        id="item-unknown-type",
    ),
    pytest.param(
        [{"role": "user", "content": [{"text": "x"}]}],
        None,
        r"messages\[0\]\.content\[0\]\.type",
        id="item-no-type",
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": ["text"], "text": "x"}]}],
        None,
        r"messages\[0\]\.content\[0\]\.type",
        id="item-type-list",
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": "text", "text": ["x"]}]}],
        None,
        r"messages\[0\]\.content\[0\]\.text must be a string, got list",
        id="item-text-list",
    ),
    pytest.param(
        [{"role": "assistant", "content": [{"type": "refusal"}]}],
        None,
        r"content\[0\]\.refusal must be a string, got NoneType",
        id="refusal-missing",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": {"function": {}}}],
        None,
        r"messages\[0\]\.tool_calls must be a list",
        id="tool-calls-dict",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": ["f"]}],
        None,
        r"messages\[0\]\.tool_calls\[0\]\.function must be an object",
        id="tool-call-str",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": [{"function": "f(x)"}]}],
        None,
        r"tool_calls\[0\]\.function must be an object",
        id="function-str",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": [{"function": {"arguments": {"a": 1}}}]}],
        None,
        r"tool_calls\[0\]\.function\.arguments must be a string, got dict",
        id="arguments-dict",
    ),
    pytest.param(
        [{"role": "assistant", "function_call": {"arguments": None}}],
        None,
        r"messages\[0\]\.function_call\.arguments must be a string",
        id="function-call-args",
    ),
    pytest.param(
        [{"role": "assistant", "function_call": "f(secret)"}],
        None,
        r"messages\[0\]\.function_call must be an object",
        id="function-call-str",
    ),
    pytest.param(
        [{"role": "user", "content": "x"}],
        ["ok", 3],
        r"documents\[1\] must be a string, got int",
        id="document-int",
    ),
    pytest.param(
        [{"role": "user", "content": "x"}],
        "a whole document",
        "documents must be a list",
        id="documents-str",
    ),
    pytest.param(
        [{"role": "user", "content": "x"}],
        {"doc": "text"},
        "documents must be a list",
        id="documents-dict",
    ),
]


@pytest.mark.parametrize(("messages", "documents", "message"), INVALID)
def test_malformed_messages_are_rejected(messages: Any, documents: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        message_parts(messages, documents)


def test_rebuild_replaces_only_the_given_paths_on_a_copy() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "a secret"}, {"type": "image_url"}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "x=secret"}}]},
        {"role": "assistant", "content": None, "function_call": {"arguments": "secret"}},
        {"role": "tool", "content": "secret", "tool_call_id": "7"},
    ]
    original = copy.deepcopy(messages)
    rebuilt = rebuild_messages(
        messages,
        {
            (0, "content", 0, "text"): "a <S_1>",
            (1, "tool_calls", 0, "function", "arguments"): "x=<S_1>",
            (2, "function_call", "arguments"): "<S_1>",
            (3, "content"): "<S_1>",
            ("documents", 0): "ignored",
        },
    )
    assert messages == original  # input untouched
    assert rebuilt == [
        {"role": "user", "content": [{"type": "text", "text": "a <S_1>"}, {"type": "image_url"}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "x=<S_1>"}}]},
        {"role": "assistant", "content": None, "function_call": {"arguments": "<S_1>"}},
        {"role": "tool", "content": "<S_1>", "tool_call_id": "7"},
    ]
    # Deep copy: mutating the result never reaches the caller's objects.
    rebuilt[0]["content"][1]["type"] = "changed"
    assert messages[0]["content"][1]["type"] == "image_url"


def test_rebuild_without_replacements_is_an_equal_copy() -> None:
    messages = [{"role": "user", "content": "hi", "name": "bob"}]
    rebuilt = rebuild_messages(messages, {})
    assert rebuilt == messages
    assert rebuilt[0] is not messages[0]


def test_other_message_fields_are_parts_too() -> None:
    """Refusals, reasoning traces, participant names, audio transcripts and
    fields this code has never heard of all reach the model or the caller as
    text, so none of them may pass unscanned."""
    message = {
        "role": "assistant",
        "content": "c",
        "refusal": "r",
        "reasoning_content": "think",
        "name": "bot",
        "audio": {"id": "a1", "data": "UklGRg==", "transcript": "spoken"},
        "tool_call_id": "call_1",
        "vendor_notes": {"items": ["n0", 7, None, {"deep": "n1"}]},
    }
    got = [(p.location, p.text, p.path) for p in message_parts([message])]
    assert got == [
        ("messages[0].content", "c", (0, "content")),
        ("messages[0].audio.transcript", "spoken", (0, "audio", "transcript")),
        ("messages[0].audio", "", (0, "audio")),  # the sound itself: media no detector reads
        ("messages[0].refusal", "r", (0, "refusal")),
        ("messages[0].reasoning_content", "think", (0, "reasoning_content")),
        ("messages[0].name", "bot", (0, "name")),
        ("messages[0][#7][#0].key", "items", (0, "vendor_notes", "items")),
        ("messages[0][#7].items[0]", "n0", (0, "vendor_notes", "items", 0)),
        ("messages[0][#7].items[3][#0].key", "deep", (0, "vendor_notes", "items", 3, "deep")),
        ("messages[0][#7].items[3][#0]", "n1", (0, "vendor_notes", "items", 3, "deep")),
    ]
    assert {p.kind for p in message_parts([message])} == {PartKind.COMPLETION, PartKind.MEDIA}


def test_audio_must_be_an_object_with_a_string_transcript() -> None:
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.audio must be an object"):
        message_parts([{"role": "assistant", "audio": "base64"}])
    with pytest.raises(InvalidInputError, match=r"audio\.transcript must be a string"):
        message_parts([{"role": "assistant", "audio": {"transcript": 3}}])


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Find a customer.",
            "parameters": {
                "type": "object",
                "properties": {"jane.doe@example.com": {"type": "string", "enum": ["a"]}},
            },
        },
    }
]


def test_request_fields_are_parts_with_kinds_by_field() -> None:
    fields = {
        "tools": TOOLS,
        "response_format": {"type": "json_schema", "json_schema": {"name": "out"}},
        "prediction": {"type": "content", "content": "draft"},
        "stop": ["END"],
        "temperature": 0.2,
        "logit_bias": {"50256": -100},
    }
    parts = field_parts(fields)
    by_location = {p.location: p for p in parts}
    assert by_location["tools[0].function.description"].text == "Find a customer."
    assert by_location["tools[0].function.description"].kind is PartKind.TOOL_DEFINITION
    assert by_location["tools[0].function.description"].path == (
        "fields",
        "tools",
        0,
        "function",
        "description",
    )
    assert by_location["response_format.json_schema.name"].kind is PartKind.SYSTEM
    assert by_location["prediction.content"].kind is PartKind.PROMPT
    assert by_location["stop[0]"].text == "END"
    # The property name is a part of its own, shown by position, never by name.
    [key] = [p for p in parts if p.text == "jane.doe@example.com"]
    assert key.location == "tools[0].function.parameters.properties[#0].key"
    assert all("jane" not in p.location for p in parts)
    assert not any(p.path[1] == "logit_bias" for p in parts)  # token ids and numbers only


def test_unknown_field_names_are_not_shown_in_locations() -> None:
    [part] = field_parts({"sk_live_field": "value"})
    assert part.location == "fields[#0]"
    assert part.kind is PartKind.PROMPT


@pytest.mark.parametrize("fields", [["tools"], "tools"])
def test_fields_must_be_an_object(fields: Any) -> None:
    with pytest.raises(InvalidInputError, match="fields must be an object"):
        field_parts(fields)


def test_rebuild_fields_swaps_values_and_renames_keys_in_place() -> None:
    fields = {"tools": copy.deepcopy(TOOLS), "user": "u-1"}
    original = copy.deepcopy(fields)
    parts = {p.text: p.path for p in field_parts(fields)}
    rebuilt = rebuild_fields(
        fields,
        {
            parts["Find a customer."]: "Find a <X_1>.",
            parts["jane.doe@example.com"]: "<EMAIL_ADDRESS_1>",
            parts["a"]: "<X_2>",  # a value under the renamed key
            (0, "content"): "not a field path: ignored",
        },
    )
    assert fields == original
    function = rebuilt["tools"][0]["function"]
    assert function["description"] == "Find a <X_1>."
    assert function["parameters"]["properties"] == {
        "<EMAIL_ADDRESS_1>": {"type": "string", "enum": ["<X_2>"]}
    }
    assert rebuilt["user"] == "u-1"


def test_renamed_keys_keep_their_order_and_may_not_collide() -> None:
    fields = {"metadata": {"first": "1", "secret-key": "2", "last": "3"}}
    path = next(p.path for p in field_parts(fields) if p.text == "secret-key")
    rebuilt = rebuild_fields(fields, {path: "<S_1>"})
    assert list(rebuilt["metadata"]) == ["first", "<S_1>", "last"]
    with pytest.raises(InvalidInputError, match="would collide"):
        rebuild_fields(fields, {path: "last"})


def test_rebuild_messages_reaches_other_message_fields() -> None:
    messages = [{"role": "assistant", "content": None, "reasoning_content": "the key is K"}]
    rebuilt = rebuild_messages(messages, {(0, "reasoning_content"): "the key is <S_1>"})
    assert rebuilt[0]["reasoning_content"] == "the key is <S_1>"


def test_fields_nesting_too_deep_are_rejected() -> None:
    deep: Any = "x"
    for _ in range(70):
        deep = [deep]
    with pytest.raises(InvalidInputError, match="nests deeper than 64 levels"):
        field_parts({"tools": deep})
    assert [p.text for p in field_parts({"tools": [[["x"]]]})] == ["x"]
