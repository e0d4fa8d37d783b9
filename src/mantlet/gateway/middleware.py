"""Per-request bookkeeping (request id, overhead header, audit of answers
that produced no model call, metrics, access log) as pure ASGI middleware.

Hand-written rather than Starlette's ``BaseHTTPMiddleware`` because that one
runs the route in a second task and pipes every response through a memory
stream, about half a millisecond per request on this hardware; wrapping
``send`` costs almost nothing and keeps streams streaming.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mantlet.gateway.errors import error_response

Message = MutableMapping[str, Any]


@dataclass
class Answer:
    """A buffered response the audit hook may replace (e.g. by a 503)."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Outcome:
    """What the access log and metrics need once the response is done."""

    route: str
    status: int = 500
    overhead_ms: float = 0.0
    total_ms: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


# Hooks: record a buffered answer, prepare and finish a request.
AuditHook = Callable[[Request, Answer, str], Awaitable[Answer]]
BeginHook = Callable[[], None]
FinishHook = Callable[[Request, Outcome], None]

log = logging.getLogger("mantlet.gateway")


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class RequestMeta:
    """Stamps ``x-request-id`` and ``x-mantlet-overhead-ms`` on every answer.

    A response that a route did not record itself (refusals, listings, admin
    actions) is buffered, handed to ``audit`` and only then sent, so nobody
    gets an answer the audit log does not hold (the hook may swap in a 503).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        audit: AuditHook,
        begin: BeginHook,
        finish: FinishHook,
        unaudited: frozenset[str],
    ) -> None:
        self.app = app
        self.audit = audit
        self.begin = begin
        self.finish = finish
        self.unaudited = unaudited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["started"] = started
        state["request_id"] = f"req_{uuid.uuid4().hex}"
        state["upstream_ms"] = 0.0
        self.begin()
        outcome = Outcome(route="unmatched")
        held: list[Message] = []
        buffering: bool | None = None  # None until the response starts

        async def send_stamped(start: Message) -> None:
            overhead = (time.perf_counter() - started) * 1000 - state.get("upstream_ms", 0.0)
            outcome.status = int(start["status"])
            outcome.overhead_ms = overhead
            headers = list(start.get("headers", []))
            headers.append((b"x-request-id", state["request_id"].encode()))
            headers.append((b"x-mantlet-overhead-ms", f"{overhead:.2f}".encode()))
            outcome.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
            await send({**start, "headers": headers})

        async def relay(message: Message) -> None:
            nonlocal buffering
            if message["type"] == "http.response.start":
                outcome.route = _route_label(scope)
                buffering = outcome.route not in self.unaudited and not state.get("audited")
                if buffering:
                    held.append(message)
                else:
                    await send_stamped(message)
                return
            if not buffering or message["type"] != "http.response.body":
                await send(message)
                return
            held.append(message)
            if message.get("more_body", False):
                return
            start, parts = held[0], held[1:]
            answer = Answer(
                status=int(start["status"]),
                headers={
                    k.decode("latin-1"): v.decode("latin-1")
                    for k, v in start.get("headers", [])
                    if k.lower() != b"content-length"
                },
                body=b"".join(bytes(p.get("body", b"")) for p in parts),
            )
            answer = await self.audit(Request(scope), answer, outcome.route)
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
            raw.append((b"content-length", str(len(answer.body)).encode()))
            await send_stamped(
                {"type": "http.response.start", "status": answer.status, "headers": raw}
            )
            await send({"type": "http.response.body", "body": answer.body})

        try:
            await self.app(scope, receive, relay)
        except Exception as exc:  # noqa: BLE001 - a bug must still answer in OpenAI shape, audited
            # The type only: a message or traceback could quote the request.
            late = " after its response started" if buffering is not None else ""
            log.error("request %s failed%s: %s", state["request_id"], late, type(exc).__name__)
            if buffering is None:
                await error_response(500, "internal error", "internal_error")(scope, receive, relay)
        finally:
            outcome.total_ms = (time.perf_counter() - started) * 1000
            self.finish(Request(scope), outcome)
