"""``POST /v1/scan``: the guard pipeline as a service, without a model call.

Services that are not written in Python, or that call their model some other
way, ask the gateway for a verdict on a text or a message list and get back
the action, the findings (kinds and offsets, never the matched values) and
the sanitized content. It runs the gateway's policy exactly as the proxy
routes do, counts against the same request quotas, and every call is
audited with its decisions.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mantlet.core.types import Verdict
from mantlet.gateway.bodies import read_json
from mantlet.gateway.errors import GatewayError, quoted_name

_FIELDS = frozenset({"side", "text", "messages", "documents", "fields", "canaries"})


def scan_router(gateway: Any) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/scan")
    async def scan(request: Request) -> dict[str, Any]:
        principal = gateway.authorize(request, "scan")
        await gateway.quotas.admit(principal)
        gateway.quotas.enter(principal)
        request.state.in_flight = True
        body = await read_json(request, gateway.max_body_bytes(principal.tenant))
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            name = quoted_name(unknown[0])
            shown = repr(name) if name else "(not an identifier)"
            raise GatewayError(400, f"unknown field {shown}", "invalid_request", name)
        side = body.get("side", "input")
        if side not in ("input", "output"):
            raise GatewayError(400, "'side' must be input or output", "invalid_request", "side")
        limit = gateway.max_messages(principal.tenant)
        content = _content(body, limit)
        documents = _strings(body, "documents", limit)
        canaries = _strings(body, "canaries", 64)
        fields = body.get("fields")
        if fields is not None and not isinstance(fields, dict):
            raise GatewayError(400, "'fields' must be an object", "invalid_request", "fields")
        if side == "output" and (documents or fields):
            raise GatewayError(
                400, "'documents' and 'fields' are input-side", "invalid_request", "side"
            )
        if side == "input" and canaries:
            raise GatewayError(400, "'canaries' are output-side", "invalid_request", "canaries")
        if side == "input":
            verdict = await gateway.check_input(
                content, principal.tenant, documents=documents, fields=fields
            )
        else:
            metadata = {"canaries": canaries} if canaries else None
            verdict = await gateway.check_output(content, principal.tenant, metadata)
        return _answer(request.state.request_id, verdict)

    return router


def _content(body: dict[str, Any], limit: int) -> Any:
    text, messages = body.get("text"), body.get("messages")
    if (text is None) == (messages is None):
        raise GatewayError(400, "give exactly one of 'text' and 'messages'", "invalid_request")
    if text is not None:
        if not isinstance(text, str):
            raise GatewayError(400, "'text' must be a string", "invalid_request", "text")
        return text
    if not isinstance(messages, list) or not messages:
        raise GatewayError(
            400, "'messages' must be a non-empty list", "invalid_request", "messages"
        )
    if len(messages) > limit:
        raise GatewayError(
            400, f"'messages' has {len(messages)} items; the limit is {limit}", "too_many_items"
        )
    return messages


def _strings(body: dict[str, Any], name: str, limit: int) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GatewayError(400, f"'{name}' must be a list of strings", "invalid_request", name)
    if len(value) > limit:
        raise GatewayError(
            400, f"'{name}' has {len(value)} items; the limit is {limit}", "too_many_items", name
        )
    return value


def _answer(request_id: str, verdict: Verdict) -> dict[str, Any]:
    data = verdict.to_dict()
    return {
        "object": "mantlet.scan",
        "id": request_id,
        "blocked": verdict.blocked,
        **{k: v for k, v in data.items() if k != "detectors"},
    }
