"""Request bodies read the way every route needs: bounded in size, valid
UTF-8, JSON, an object, and not nested deeper than code downstream can walk.
Each failure is a 4xx in OpenAI's error shape, never a 500."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from mantlet.core.jsontext import has_lone_surrogate
from mantlet.gateway.accountability import body_digest
from mantlet.gateway.errors import GatewayError

# Deeper JSON is refused: no OpenAI request nests anywhere near it, and the
# scanning and copying code downstream recurses.
MAX_JSON_DEPTH = 64
_TOO_DEEP = object()


class _NonFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    """Python's parser accepts NaN and Infinity; JSON does not, and the audit
    log's canonical JSON cannot hold them."""
    raise _NonFinite(f"{name} is not a JSON number")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"request body larger than {limit} bytes", "body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, f"request body larger than {limit} bytes", "body_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    request.state.request_sha256 = body_digest(raw)
    try:
        # "utf-8-sig": a leading byte order mark (Windows tools send one) is
        # dropped, which RFC 8259 allows; anywhere else it is invalid JSON.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise GatewayError(400, "request body is not valid UTF-8", "invalid_encoding") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise GatewayError(
            400,
            f"request body is not valid JSON (line {exc.lineno}, column {exc.colno})",
            "invalid_json",
        ) from None
    except _NonFinite as exc:
        raise GatewayError(400, f"request body is not valid JSON ({exc})", "invalid_json") from None
    except RecursionError:  # deeper than the parser's own stack allows
        data = _TOO_DEEP
    if data is _TOO_DEEP or nesting(data) > MAX_JSON_DEPTH:
        raise GatewayError(
            400, f"request body nests deeper than {MAX_JSON_DEPTH} levels", "invalid_json"
        )
    if has_lone_surrogate(text, data):
        raise GatewayError(
            400, "request body is not valid JSON (a lone UTF-16 surrogate escape)", "invalid_json"
        )
    if not isinstance(data, dict):
        raise GatewayError(400, "request body must be a JSON object", "invalid_request")
    return data


def nesting(value: Any) -> int:
    """How deep objects and arrays nest in ``value`` (iteratively: the point
    is to refuse what recursive code downstream could not handle)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                break
            children = node.values() if isinstance(node, dict) else node
            pending.extend((child, depth + 1) for child in children)
    return deepest
