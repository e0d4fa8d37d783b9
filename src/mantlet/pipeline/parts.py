"""Splitting a request or response into the text parts that get scanned, and
putting sanitized text back in the same places.

Every text-bearing field of an OpenAI-style message is a part: string content,
each text item of list content, tool-call arguments and tool results. Missing
one is how guardrails get bypassed (tool-role messages are a known blind spot
of other gateways), so unknown shapes are rejected rather than skipped.
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
            elif item_type not in _NON_TEXT_ITEMS:
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
    for path, text in replacements.items():
        if not path or path[0] == "documents":
            continue
        target: Any = rebuilt
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = text
    return rebuilt
