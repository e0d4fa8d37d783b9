"""Splitting a request or response into the text parts that get scanned, and
putting sanitized text back in the same places.

Every text-bearing field of an OpenAI-style message is a part: string content,
each text item of list content, tool-call arguments and tool results, and any
other string a message carries (a refusal, a reasoning trace, a participant
name). Missing one is how guardrails get bypassed (tool-role messages are a
known blind spot of other gateways), so unknown content shapes are rejected and
unknown fields are scanned rather than skipped. The same holds for the rest of
a request (``field_parts``): tool declarations, response schemas, predicted
output and whatever else reaches the model beside the messages.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mantlet.core.types import PartKind, Side
from mantlet.errors import InvalidInputError

_ROLE_PARTS = {
    "system": PartKind.SYSTEM,
    "developer": PartKind.SYSTEM,
    "user": PartKind.PROMPT,
    "assistant": PartKind.COMPLETION,
    "tool": PartKind.TOOL_OUTPUT,
    "function": PartKind.TOOL_OUTPUT,
}
# Content items that carry no text to scan; anything else unknown is rejected.
_NON_TEXT_ITEMS = {"image_url", "input_audio", "file", "image", "audio"}
# Message fields with their own shape rules below, and fields that hold ids or
# a fixed vocabulary rather than text; every other field is scanned whole.
_SHAPED_MESSAGE_FIELDS = frozenset({"role", "content", "tool_calls", "function_call", "audio"})
_ID_MESSAGE_FIELDS = frozenset({"tool_call_id"})
# Request fields read as tool declarations or as instructions; any other field
# beside the messages is scanned as prompt text.
_FIELD_KINDS = {
    "tools": PartKind.TOOL_DEFINITION,
    "functions": PartKind.TOOL_DEFINITION,
    "tool_choice": PartKind.TOOL_DEFINITION,
    "function_call": PartKind.TOOL_DEFINITION,
    "response_format": PartKind.SYSTEM,
}
# How deep a scanned JSON value may nest (no tool schema comes close).
MAX_DEPTH = 64
# Token-id keys and numeric biases: nothing in it is read as text.
_NON_TEXT_FIELDS = frozenset({"logit_bias"})
# Object keys shown by name in a part's location. Any other key is shown by
# position: locations go into audit records, which must not hold a value a
# detector found (a JSON-schema property may be named after an e-mail address).
_NAMED_KEYS = frozenset(
    {
        "additionalProperties",
        "annotations",
        "arguments",
        "content",
        "default",
        "description",
        "enum",
        "examples",
        "format",
        "function",
        "items",
        "json_schema",
        "metadata",
        "name",
        "parameters",
        "pattern",
        "prediction",
        "properties",
        "reasoning",
        "reasoning_content",
        "refusal",
        "required",
        "response_format",
        "schema",
        "stop",
        "suffix",
        "text",
        "title",
        "tool_choice",
        "tools",
        "functions",
        "transcript",
        "type",
        "url",
        "url_citation",
        "user",
    }
)


class DictKey(str):
    """The last step of a part's path when the part is an object key (a
    JSON-schema property name, say): redaction renames the key."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TextPart:
    """One scannable text. ``path`` addresses it inside the original payload."""

    location: str
    text: str
    kind: PartKind
    role: str | None
    path: tuple[str | int, ...]


def _require_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{where} must be a string, got {type(value).__name__}")
    return value


def _member_where(where: str, key: str, position: int) -> str:
    return f"{where}.{key}" if key in _NAMED_KEYS else f"{where}[#{position}]"


def json_parts(
    value: object, where: str, path: tuple[str | int, ...], kind: PartKind, role: str | None
) -> list[TextPart]:
    """Every string inside a JSON value, object keys included, as a part."""
    if isinstance(value, str):
        return [TextPart(where, value, kind, role, path)]
    if len(path) > MAX_DEPTH:
        shown = where if len(where) <= 60 else where[:57] + "..."
        raise InvalidInputError(f"{shown} nests deeper than {MAX_DEPTH} levels")
    parts: list[TextPart] = []
    if isinstance(value, Mapping):
        for position, (key, member) in enumerate(value.items()):
            key = _require_str(key, f"{where} key")
            member_where = _member_where(where, key, position)
            if key:
                key_where = f"{where}[#{position}].key"
                parts.append(TextPart(key_where, key, kind, role, (*path, DictKey(key))))
            parts.extend(json_parts(member, member_where, (*path, key), kind, role))
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            parts.extend(json_parts(item, f"{where}[{position}]", (*path, position), kind, role))
    return parts


def field_parts(fields: Mapping[str, object]) -> list[TextPart]:
    """The request fields sent beside the messages (``tools``,
    ``response_format``, ``prediction``, ``stop``, ``user``, ...) as parts
    whose paths start with ``"fields"``."""
    if not isinstance(fields, Mapping):
        raise InvalidInputError("fields must be an object")
    parts: list[TextPart] = []
    for position, (name, value) in enumerate(fields.items()):
        name = _require_str(name, "field name")
        if name in _NON_TEXT_FIELDS:
            continue
        kind = _FIELD_KINDS.get(name, PartKind.PROMPT)
        where = name if name in _NAMED_KEYS else f"fields[#{position}]"
        parts.extend(json_parts(value, where, ("fields", name), kind, None))
    return parts


def text_parts(text: str, side: Side) -> list[TextPart]:
    _require_str(text, "text")
    kind = PartKind.PROMPT if side is Side.INPUT else PartKind.COMPLETION
    return [TextPart("text", text, kind, None, ())]


def _message_parts(index: int, message: object) -> list[TextPart]:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise InvalidInputError(f"{where} must be an object, got {type(message).__name__}")
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLE_PARTS:
        raise InvalidInputError(f"{where}.role must be one of {', '.join(_ROLE_PARTS)}")
    kind = _ROLE_PARTS[role]
    parts: list[TextPart] = []
    path: tuple[str | int, ...]
    content = message.get("content")
    if isinstance(content, str):
        parts.append(TextPart(f"{where}.content", content, kind, role, (index, "content")))
    elif isinstance(content, list):
        for j, item in enumerate(content):
            item_where = f"{where}.content[{j}]"
            if not isinstance(item, Mapping):
                raise InvalidInputError(f"{item_where} must be an object")
            item_type = item.get("type")
            if not isinstance(item_type, str):
                raise InvalidInputError(f"{item_where}.type must be a string")
            if item_type in ("text", "input_text", "output_text"):
                text = _require_str(item.get("text"), f"{item_where}.text")
                path = (index, "content", j, "text")
                parts.append(TextPart(f"{item_where}.text", text, kind, role, path))
            elif item_type == "refusal":
                text = _require_str(item.get("refusal"), f"{item_where}.refusal")
                path = (index, "content", j, "refusal")
                parts.append(TextPart(f"{item_where}.refusal", text, kind, role, path))
            elif item_type in _NON_TEXT_ITEMS:
                parts.append(TextPart(item_where, "", PartKind.MEDIA, role, (index, "content", j)))
            else:
                raise InvalidInputError(f"{item_where}.type {item_type!r} is not supported")
    elif content is not None:
        raise InvalidInputError(f"{where}.content must be a string, a list or null")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise InvalidInputError(f"{where}.tool_calls must be a list")
        for j, call in enumerate(tool_calls):
            call_where = f"{where}.tool_calls[{j}].function"
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping):
                raise InvalidInputError(f"{call_where} must be an object")
            args = function.get("arguments", "")
            text = _require_str(args, f"{call_where}.arguments")
            path = (index, "tool_calls", j, "function", "arguments")
            parts.append(TextPart(f"{call_where}.arguments", text, PartKind.TOOL_CALL, role, path))
    function_call = message.get("function_call")
    if function_call is not None and not isinstance(function_call, Mapping):
        raise InvalidInputError(f"{where}.function_call must be an object")
    if isinstance(function_call, Mapping) and "arguments" in function_call:
        text = _require_str(function_call["arguments"], f"{where}.function_call.arguments")
        path = (index, "function_call", "arguments")
        parts.append(
            TextPart(f"{where}.function_call.arguments", text, PartKind.TOOL_CALL, role, path)
        )
    audio = message.get("audio")
    if audio is not None and not isinstance(audio, Mapping):
        raise InvalidInputError(f"{where}.audio must be an object")
    if isinstance(audio, Mapping) and "transcript" in audio:  # the rest is an id or sound
        text = _require_str(audio["transcript"], f"{where}.audio.transcript")
        path = (index, "audio", "transcript")
        parts.append(TextPart(f"{where}.audio.transcript", text, kind, role, path))
    if isinstance(audio, Mapping) and audio.get("data"):  # generated speech
        parts.append(TextPart(f"{where}.audio", "", PartKind.MEDIA, role, (index, "audio")))
    for position, (key, value) in enumerate(message.items()):
        if key in _SHAPED_MESSAGE_FIELDS or key in _ID_MESSAGE_FIELDS:
            continue
        key = _require_str(key, f"{where} key")
        field_where = _member_where(where, key, position)
        parts.extend(json_parts(value, field_where, (index, key), kind, role))
    return parts


def message_parts(
    messages: Sequence[object], documents: Sequence[object] | None = None
) -> list[TextPart]:
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        raise InvalidInputError("messages must be a list of message objects")
    if documents is not None and (
        not isinstance(documents, Sequence) or isinstance(documents, str | bytes)
    ):
        raise InvalidInputError("documents must be a list of strings")
    parts: list[TextPart] = []
    for index, message in enumerate(messages):
        parts.extend(_message_parts(index, message))
    for index, document in enumerate(documents or ()):
        text = _require_str(document, f"documents[{index}]")
        parts.append(
            TextPart(f"documents[{index}]", text, PartKind.DOCUMENT, None, ("documents", index))
        )
    return parts


def rebuild_messages(
    messages: Sequence[Mapping[str, Any]], replacements: Mapping[tuple[str | int, ...], str]
) -> list[dict[str, Any]]:
    """A deep copy of ``messages`` with the texts at ``replacements`` paths swapped."""
    rebuilt: list[dict[str, Any]] = [copy.deepcopy(dict(m)) for m in messages]
    own = {path: text for path, text in replacements.items() if path and isinstance(path[0], int)}
    _replace(rebuilt, own)
    return rebuilt


def rebuild_fields(
    fields: Mapping[str, Any], replacements: Mapping[tuple[str | int, ...], str]
) -> dict[str, Any]:
    """``fields`` with the texts at ``replacements`` paths (those
    ``field_parts`` made, starting with ``"fields"``) swapped, in a deep copy;
    a shallow one when there is nothing to swap (tool schemas can be large)."""
    own = {path[1:]: text for path, text in replacements.items() if path[:1] == ("fields",)}
    if not own:
        return dict(fields)
    rebuilt = copy.deepcopy(dict(fields))
    _replace(rebuilt, own)
    return rebuilt


def _replace(root: Any, replacements: Mapping[tuple[str | int, ...], str]) -> None:
    # Values first, while every key still has its old name; then renamed keys,
    # the deepest first for the same reason.
    values = [(p, t) for p, t in replacements.items() if not isinstance(p[-1], DictKey)]
    keys = [(p, t) for p, t in replacements.items() if isinstance(p[-1], DictKey)]
    for path, text in values:
        target = root
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = text
    for path, text in sorted(keys, key=lambda item: -len(item[0])):
        target = root
        for key in path[:-2]:
            target = target[key]
        owner = target[path[-2]] if len(path) > 1 else target
        old = str(path[-1])
        if text != old and text in owner:
            raise InvalidInputError("a redacted object key would collide with another key")
        renamed = {(text if k == old else k): v for k, v in owner.items()}
        owner.clear()
        owner.update(renamed)  # in place, keeping the keys' order
