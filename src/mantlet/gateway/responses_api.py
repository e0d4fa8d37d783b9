"""OpenAI's Responses API (``POST /v1/responses``) served over Chat Completions.

Agents built on the OpenAI Agents SDK, and newer SDK code in general, call
``/v1/responses``; most upstreams (llama.cpp, vLLM, the embedded model)
speak only Chat Completions. Requests are translated to a chat request so the
chat route's guard, pseudonymization, quotas and audit apply unchanged, and
answers, streamed or not, are translated back.

Hand-written because no maintained library does this translation outside a
whole proxy (LiteLLM's bridge is part of LiteLLM itself).

Anything that needs state kept by the server (``previous_response_id``,
``conversation``, stored prompts, item references, background runs) and the
hosted tools (web search, file search, code interpreter, ...) are refused
with a 400 naming the parameter: silently dropping them would change what
the model is asked, and Mantlet stores no responses.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

from mantlet.gateway.errors import GatewayError, quoted_name

# Accepted and not forwarded: they only concern OpenAI's own storage or
# response shape, which Mantlet answers itself.
_NOT_FORWARDED = frozenset(
    {"store", "include", "truncation", "metadata", "stream_options", "prompt_cache_retention"}
)
# Forwarded under the same name: chat requests take them as they are.
_SAME_NAME = frozenset(
    {
        "temperature",
        "top_p",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "service_tier",
        "prompt_cache_key",
        "seed",
    }
)
_HANDLED = frozenset(
    {
        "model",
        "stream",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "reasoning",
        "text",
    }
)
# Must be absent or empty: each needs state a proxy does not keep.
_STATEFUL = ("previous_response_id", "conversation", "prompt", "background")
# Must be absent or empty too: no chat equivalent to translate them to.
_UNTRANSLATABLE = ("max_tool_calls", "top_logprobs")
_ROLES = frozenset({"user", "assistant", "system", "developer"})


def _refuse(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, "unsupported_parameter", param)


def to_chat_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions body that asks the same of the model."""
    for name in _STATEFUL:
        if body.get(name) not in (None, False, "", {}):
            raise _refuse(
                f"'{name}' needs state this gateway does not keep; send the whole input instead",
                name,
            )
    for name in _UNTRANSLATABLE:
        if body.get(name) not in (None, 0):
            raise _refuse(f"parameter {name!r} is not supported on /v1/responses", name)
    unknown = set(body) - _HANDLED - _SAME_NAME - _NOT_FORWARDED - {*_STATEFUL, *_UNTRANSLATABLE}
    if unknown:
        quoted = quoted_name(sorted(unknown)[0])
        shown = repr(quoted) if quoted else "(not an identifier)"
        raise _refuse(f"parameter {shown} is not supported on /v1/responses", quoted)
    chat: dict[str, Any] = {"model": body.get("model")}
    if "stream" in body:
        chat["stream"] = body["stream"]
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise GatewayError(
                400, "'instructions' must be a string", "invalid_request", "instructions"
            )
        messages.append({"role": "system", "content": instructions})
    messages.extend(_input_messages(body.get("input")))
    chat["messages"] = messages
    for name in _SAME_NAME & set(body):
        chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        chat["tools"] = _chat_tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    elif reasoning is not None and not isinstance(reasoning, dict):
        raise GatewayError(400, "'reasoning' must be an object", "invalid_request", "reasoning")
    chat.update(_text_options(body.get("text")))
    return chat


def _input_messages(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise GatewayError(
            400, "'input' must be a string or a non-empty list of items", "invalid_request", "input"
        )
    messages: list[dict[str, Any]] = []
    for position, item in enumerate(raw):
        where = f"input[{position}]"
        if not isinstance(item, dict):
            raise GatewayError(400, f"{where} must be an object", "invalid_request", "input")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call = {
                "id": _string(item, "call_id", where),
                "type": "function",
                "function": {
                    "name": _string(item, "name", where),
                    "arguments": _string(item, "arguments", where),
                },
            }
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls share one message
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": _string(item, "call_id", where),
                    "content": _tool_output(item.get("output"), where),
                }
            )
        elif kind == "reasoning":
            continue  # the model's own earlier reasoning: chat upstreams take none back
        else:
            raise _refuse(f"{where}: input items of type {kind!r} are not supported", "input")
    if not messages:
        raise GatewayError(400, "'input' holds no message", "invalid_request", "input")
    return messages


def _message(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise GatewayError(
            400, f"{where}.role must be one of {sorted(_ROLES)}", "invalid_request", "input"
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise GatewayError(
            400, f"{where}.content must be a string or a list", "invalid_request", "input"
        )
    if role == "assistant":  # earlier answers: chat takes them as plain text
        texts, refusals = [], []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("output_text", "input_text"):
                texts.append(_string(part, "text", where))
            elif kind == "refusal":
                refusals.append(_string(part, "refusal", where))
            else:
                raise _refuse(f"{where}: assistant content of type {kind!r}", "input")
        message: dict[str, Any] = {"role": role, "content": "".join(texts)}
        if refusals:
            message["refusal"] = "".join(refusals)
        return message
    return {"role": role, "content": [_content_part(part, where) for part in content]}


def _content_part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": _string(part, "text", where)}
    if kind == "input_image":
        if not isinstance(part.get("image_url"), str):
            raise _refuse(f"{where}: images must be given by 'image_url' (no file ids)", "input")
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_url") is not None:
            raise _refuse(f"{where}: files by URL are not supported", "input")
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k) is not None}
        return {"type": "file", "file": file}
    raise _refuse(f"{where}: content of type {kind!r} is not supported", "input")


def _tool_output(output: Any, where: str) -> Any:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        parts = [_content_part(part, where) for part in output]
        if all(part["type"] == "text" for part in parts):
            return parts
        raise _refuse(f"{where}: tool output other than text is not supported", "input")
    message = f"{where}.output must be a string or a list"
    raise GatewayError(400, message, "invalid_request", "input")


def _string(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise GatewayError(400, f"{where}.{name} must be a string", "invalid_request", "input")
    return value


def _chat_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise GatewayError(400, "'tools' must be a list", "invalid_request", "tools")
    converted = []
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise _refuse(
                f"tools of type {kind!r} are hosted by OpenAI; only 'function' tools pass", "tools"
            )
        function = {k: v for k, v in tool.items() if k != "type"}
        converted.append({"type": "function", "function": function})
    return converted


def _chat_tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise _refuse("'tool_choice' must be auto, none, required or a function", "tool_choice")


def _text_options(text: Any) -> dict[str, Any]:
    if text is None:
        return {}
    if not isinstance(text, dict):
        raise GatewayError(400, "'text' must be an object", "invalid_request", "text")
    options: dict[str, Any] = {}
    if text.get("verbosity") is not None:
        options["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return options
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        options["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: v for k, v in fmt.items() if k != "type"}
        options["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise _refuse("'text.format' must be text, json_object or json_schema", "text")
    return options


def new_ids() -> Callable[[str], str]:
    """Item ids (``msg_…``, ``fc_…``, ``rs_…``): random, since items are not stored."""
    return lambda prefix: f"{prefix}_{secrets.token_hex(12)}"


def _usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict) or not isinstance(usage.get("total_tokens"), int):
        return None
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": usage.get("prompt_tokens", 0),
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": usage["total_tokens"],
    }


def response_object(
    body: Mapping[str, Any],
    response_id: str,
    created: int,
    output: list[dict[str, Any]],
    *,
    finish_reason: str | None,
    usage: Any = None,
    status: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object echoing the request's settings, as OpenAI does."""
    incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}
    reason = incomplete.get(finish_reason) if isinstance(finish_reason, str) else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status or ("incomplete" if reason else "completed"),
        "error": error,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": body.get("reasoning"),
        "store": False,
        "temperature": body.get("temperature"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "usage": _usage(usage),
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def from_chat_answer(
    answer: Mapping[str, Any], body: Mapping[str, Any], response_id: str
) -> dict[str, Any]:
    """A guarded chat completion as a ``response`` object (its first choice:
    the Responses API has no ``n``)."""
    ids = new_ids()
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    found = choice.get("message")
    message: dict[str, Any] = found if isinstance(found, dict) else {}
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        output.append(_reasoning_item(ids("rs"), reasoning))
    content: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append(_text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "refusal", "refusal": message["refusal"]})
    if content:
        output.append(_message_item(ids("msg"), content, "completed"))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, dict):
            output.append(_call_item(ids("fc"), call, "completed"))
    created = answer.get("created")
    return response_object(
        body,
        response_id,
        created if isinstance(created, int) and created else int(time.time()),
        output,
        finish_reason=choice.get("finish_reason"),
        usage=answer.get("usage"),
    )


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def _call_item(item_id: str, call: Mapping[str, Any], status: str) -> dict[str, Any]:
    found = call.get("function")
    function: Mapping[str, Any] = found if isinstance(found, dict) else {}
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.get("id") or item_id,
        "name": function.get("name", ""),
        "arguments": function.get("arguments", ""),
    }


class StreamTranslator:
    """Chat-completion stream events (already guarded) in, Responses stream
    events out: ``response.created``, the output items with their deltas,
    then ``response.completed`` (or ``incomplete``), or ``error`` followed
    by ``response.failed`` when the chat stream ends in an error event.

    Mantlet's audit index, provenance manifest and watermark, which ride on
    the chat stream's closing chunk, ride on the final response object."""

    def __init__(self, body: Mapping[str, Any], response_id: str) -> None:
        self.body = body
        self.response_id = response_id
        self.created = int(time.time())
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item deltas go to
        self.part: dict[str, Any] | None = None  # its open content part
        self.finish: str | None = None
        self.usage: Any = None
        self.extra: dict[str, Any] = {}
        self.ids = new_ids()

    async def translate(self, events: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
        """The chat stream is started before the first event goes out and
        closed when this one is: its own cleanup (the quota slot, the audit
        record of a stream the caller left) must run, not wait for the
        garbage collector."""
        try:
            first = await anext(events, None)
            yield self._emit("response.created", response=self._snapshot("in_progress"))
            yield self._emit("response.in_progress", response=self._snapshot("in_progress"))
            pending = b""
            while first is not None:
                pending += first
                while b"\n\n" in pending:
                    raw, pending = pending.split(b"\n\n", 1)
                    for line in raw.split(b"\n"):
                        if line.startswith(b"data: "):
                            for out in self._on_data(line[6:]):
                                yield out
                first = await anext(events, None)
        finally:
            await events.aclose()

    def _on_data(self, data: bytes) -> list[bytes]:
        if data.strip() == b"[DONE]":
            return self._close_all() + self._final()
        event = json.loads(data)
        if isinstance(event.get("error"), dict):
            return self._failed(event["error"])
        out: list[bytes] = []
        for key in ("mantlet_audit_index", "mantlet_provenance", "mantlet_watermark"):
            if key in event:
                self.extra[key] = event[key]
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out += self._text_delta("reasoning", reasoning)
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._text_delta("output_text", delta["content"])
            if isinstance(delta.get("refusal"), str) and delta["refusal"]:
                out += self._text_delta("refusal", delta["refusal"])
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def _text_delta(self, kind: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        item_type = "reasoning" if kind == "reasoning" else "message"
        if self.open is None or self.open["type"] != item_type:
            out += self._close_all()
            item: dict[str, Any] = (
                {"id": self.ids("rs"), "type": "reasoning", "summary": [], "content": []}
                if item_type == "reasoning"
                else _message_item(self.ids("msg"), [], "in_progress")
            )
            self.open = item
            self.output.append(item)
            out.append(self._emit("response.output_item.added", **self._at(), item=dict(item)))
        assert self.open is not None
        part_type = "reasoning_text" if kind == "reasoning" else kind
        if self.part is None or self.part["type"] != part_type:
            out += self._close_part()
            field = "refusal" if kind == "refusal" else "text"
            self.part = {"type": part_type, field: ""}
            if part_type == "output_text":
                self.part.update(annotations=[], logprobs=[])
            self.open["content"].append(self.part)
            if item_type == "message":
                added = dict(self.part)
                out.append(self._emit("response.content_part.added", **self._at(True), part=added))
        field = "refusal" if kind == "refusal" else "text"
        self.part[field] += text
        name = {
            "reasoning": "response.reasoning_text.delta",
            "refusal": "response.refusal.delta",
        }.get(kind, "response.output_text.delta")
        extra: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
        out.append(self._emit(name, **self._at(True), delta=text, **extra))
        return out

    def _call(self, call: Mapping[str, Any]) -> list[bytes]:
        out = self._close_all()
        item = _call_item(self.ids("fc"), call, "in_progress")
        arguments = item["arguments"]
        self.output.append(item)
        at = {"output_index": len(self.output) - 1}
        out.append(self._emit("response.output_item.added", **at, item={**item, "arguments": ""}))
        if arguments:
            out.append(
                self._emit(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    **at,
                    delta=arguments,
                )
            )
        out.append(
            self._emit(
                "response.function_call_arguments.done",
                item_id=item["id"],
                **at,
                name=item["name"],
                arguments=arguments,
            )
        )
        item["status"] = "completed"
        out.append(self._emit("response.output_item.done", **at, item=item))
        return out

    def _close_part(self) -> list[bytes]:
        part, self.part = self.part, None
        if part is None or self.open is None:
            return []
        at = self._at(True, content_index=len(self.open["content"]) - 1)
        if part["type"] == "reasoning_text":
            return [self._emit("response.reasoning_text.done", **at, text=part["text"])]
        if part["type"] == "refusal":
            done = self._emit("response.refusal.done", **at, refusal=part["refusal"])
        else:
            done = self._emit("response.output_text.done", **at, text=part["text"], logprobs=[])
        return [done, self._emit("response.content_part.done", **at, part=part)]

    def _close_all(self) -> list[bytes]:
        out = self._close_part()
        if self.open is not None:
            if self.open["type"] == "message":
                self.open["status"] = "completed"
            out.append(self._emit("response.output_item.done", **self._at(), item=self.open))
            self.open = None
        return out

    def _final(self) -> list[bytes]:
        response = {
            **response_object(
                self.body,
                self.response_id,
                self.created,
                self.output,
                finish_reason=self.finish,
                usage=self.usage,
            ),
            **self.extra,
        }
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return [self._emit(kind, response=response)]

    def _failed(self, error: Mapping[str, Any]) -> list[bytes]:
        code, message = error.get("code"), str(error.get("message", "the stream failed"))
        response = response_object(
            self.body,
            self.response_id,
            self.created,
            self.output,
            finish_reason=None,
            status="failed",
            error={"code": code or "server_error", "message": message},
        )
        return [
            self._emit("error", code=code, message=message, param=error.get("param")),
            self._emit("response.failed", response=response),
        ]

    def _snapshot(self, status: str) -> dict[str, Any]:
        return response_object(
            self.body, self.response_id, self.created, [], finish_reason=None, status=status
        )

    def _at(self, with_part: bool = False, content_index: int | None = None) -> dict[str, Any]:
        assert self.open is not None
        at: dict[str, Any] = {"output_index": self.output.index(self.open)}
        if with_part:
            at["item_id"] = self.open["id"]
            at["content_index"] = (
                content_index if content_index is not None else len(self.open["content"]) - 1
            )
        return at

    def _emit(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode()
