"""The gateway application: ``create_app(settings)`` builds a FastAPI app with
nothing created at import time.

Request path for ``POST /v1/chat/completions``:
authenticate (API key) → authorize (role permission, model) → parse and bound
the body → guard the input (block, or forward the redacted messages) →
upstream, with ordered fallbacks → guard the output → answer, streamed or not.
Streaming is buffered: the whole answer is checked before the first byte
leaves, so no unscanned token reaches the caller.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from mantlet.core.types import Action, Verdict
from mantlet.detectors.canary import canary_instruction, make_canary
from mantlet.gateway.errors import GatewayError, error_response, install_handlers
from mantlet.gateway.keys import AuthError, KeyStore, Principal
from mantlet.gateway.metrics import Metrics
from mantlet.gateway.providers import Endpoint, Provider, ProviderError, build_provider
from mantlet.gateway.quotas import Quotas
from mantlet.gateway.settings import GatewaySettings
from mantlet.gateway.tokens import TokenVerifier
from mantlet.gateway.watermark_routes import watermark_router
from mantlet.pipeline.shield import Shield
from mantlet.watermark import current_tenant

# Roles and their permissions are data; a custom role is one more entry.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"chat", "models", "keys:manage", "audit:read", "watermark:detect"}),
    "auditor": frozenset({"models", "audit:read", "watermark:detect"}),
    "app": frozenset({"chat", "models"}),
}
BLOCKED_NOTICE = "[blocked by Mantlet policy]"
access_log = logging.getLogger("mantlet.gateway.access")


@dataclass
class Gateway:
    """Everything a request needs, built once per app."""

    settings: GatewaySettings
    shield: Shield
    keys: KeyStore
    providers: dict[str, Provider]
    quotas: Quotas
    tokens: TokenVerifier | None = None
    metrics: Metrics = field(default_factory=Metrics)
    routes: dict[str, list[str]] = field(default_factory=dict)
    upstream_models: dict[str, str] = field(default_factory=dict)

    async def check_input(self, content: Any, tenant: str) -> Verdict:
        verdict = await self.shield.acheck_input(content, tenant=tenant)
        self.metrics.observe_verdict(verdict)
        return verdict

    async def check_output(
        self, content: Any, tenant: str, metadata: Mapping[str, Any] | None = None
    ) -> Verdict:
        verdict = await self.shield.acheck_output(content, tenant=tenant, metadata=metadata)
        self.metrics.observe_verdict(verdict)
        return verdict

    def authorize(self, request: Request, permission: str) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GatewayError(
                401, "missing API key (Authorization: Bearer ...)", "invalid_api_key"
            )
        token = token.strip()
        try:
            if token.startswith("mk-") or self.tokens is None:
                principal = self.keys.verify(token)
            else:
                principal = self.tokens.verify(token)
        except AuthError as exc:
            raise GatewayError(401, str(exc), "invalid_api_key") from None
        if permission not in ROLE_PERMISSIONS.get(principal.role, frozenset()):
            raise GatewayError(
                403, f"role {principal.role!r} may not use this route", "permission_denied"
            )
        request.state.principal = principal
        return principal

    @staticmethod
    def authorizes(principal: Principal, permission: str) -> bool:
        return permission in ROLE_PERMISSIONS.get(principal.role, frozenset())


def server_secret(data_dir: Path) -> bytes:
    """The key-hashing secret: generated on first start, file mode 0600."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / "server.key"
    if not path.exists():
        with path.open("x", encoding="ascii") as handle:
            path.chmod(0o600)
            handle.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text("ascii").strip())


def bootstrap_admin_key(keys: KeyStore) -> str | None:
    """Create the first admin key when none exists; the caller prints it once."""
    if keys.list():
        return None
    key, _ = keys.create(tenant="default", role="admin", name="bootstrap admin")
    return key


def create_app(
    settings: GatewaySettings,
    *,
    keys: KeyStore | None = None,
    providers: Mapping[str, Provider] | None = None,
    shield: Shield | None = None,
) -> FastAPI:
    keys = keys or KeyStore(settings.resolved_database_url, server_secret(settings.data_dir))
    built = dict(providers) if providers is not None else {}
    for upstream in settings.upstreams:
        if upstream.name not in built:
            built[upstream.name] = build_provider(upstream)
    gateway = Gateway(
        settings=settings,
        shield=shield or Shield.from_policy(settings.policy),
        keys=keys,
        providers=built,
        quotas=Quotas(
            storage_uri=settings.quotas.storage_uri,
            requests=settings.quotas.requests_per_key,
            requests_by_role=settings.quotas.requests_per_key_by_role,
            tenant_tokens=settings.quotas.tokens_per_tenant,
            concurrent=settings.quotas.concurrent_per_key,
        ),
        tokens=TokenVerifier(settings.oidc) if settings.oidc else None,
        routes={r.model: list(r.upstreams) for r in settings.routes},
        upstream_models={r.model: r.upstream_model or r.model for r in settings.routes},
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for provider in gateway.providers.values():
            await provider.aclose()

    app = FastAPI(title="Mantlet gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    install_handlers(app)
    app.include_router(watermark_router(gateway))

    @app.middleware("http")
    async def _request_meta(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        request.state.request_id = f"req_{uuid.uuid4().hex}"
        request.state.upstream_ms = 0.0
        try:
            response = await call_next(request)
        except Exception:  # noqa: BLE001 - a bug must still answer in OpenAI's shape
            response = error_response(500, "internal error", "internal_error")
        finally:
            if getattr(request.state, "in_flight", False):
                gateway.quotas.leave(request.state.principal)
        total_ms = (time.perf_counter() - started) * 1000
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        gateway.metrics.requests.labels(label, str(response.status_code)).inc()
        gateway.metrics.latency.labels(label).observe(total_ms / 1000)
        if response.status_code == 429:
            gateway.metrics.limit_rejections.inc()
        overhead_ms = total_ms - request.state.upstream_ms
        response.headers["x-request-id"] = request.state.request_id
        response.headers["x-mantlet-overhead-ms"] = f"{overhead_ms:.2f}"
        principal = getattr(request.state, "principal", None)
        # One JSON line per request: identifiers, outcome and timings, never content.
        access_log.info(
            json.dumps(
                {
                    "event": "request",
                    "request_id": request.state.request_id,
                    "method": request.method,
                    "route": label,
                    "status": response.status_code,
                    "key_id": principal.key_id if principal else None,
                    "tenant": principal.tenant if principal else None,
                    "input_action": response.headers.get("x-mantlet-input-action"),
                    "output_action": response.headers.get("x-mantlet-output-action"),
                    "latency_ms": round(total_ms, 2),
                    "overhead_ms": round(overhead_ms, 2),
                }
            )
        )
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        """Ready when the key store answers (the shield was built at start-up)."""
        try:
            gateway.keys.list(tenant="__readyz__")
        except Exception:  # noqa: BLE001 - any storage failure means not ready
            return error_response(503, "key store unavailable", "not_ready")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        gateway.authorize(request, "audit:read")
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        principal = gateway.authorize(request, "models")
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "mantlet"}
            for model in gateway.routes
            if principal.may_use(model)
        ]
        return {"object": "list", "data": data}

    @app.get("/v1/admin/keys")
    async def admin_list_keys(request: Request) -> dict[str, Any]:
        gateway.authorize(request, "keys:manage")
        tenant = request.query_params.get("tenant")
        return {"object": "list", "data": [i.to_dict() for i in gateway.keys.list(tenant=tenant)]}

    @app.post("/v1/admin/keys")
    async def admin_create_key(request: Request) -> JSONResponse:
        gateway.authorize(request, "keys:manage")
        body = await _read_json(request, settings.max_body_bytes)
        tenant, role, name = body.get("tenant"), body.get("role", "app"), body.get("name", "")
        models, days = body.get("models"), body.get("expires_in_days")
        if not isinstance(tenant, str) or not isinstance(role, str) or not isinstance(name, str):
            raise GatewayError(
                400, "'tenant', 'role' and 'name' must be strings", "invalid_request"
            )
        if role not in ROLE_PERMISSIONS:
            raise GatewayError(400, f"unknown role {role!r}", "invalid_request", "role")
        if models is not None and not (
            isinstance(models, list) and all(isinstance(m, str) for m in models)
        ):
            raise GatewayError(400, "'models' must be a list of strings", "invalid_request")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
            raise GatewayError(
                400, "'expires_in_days' must be a positive integer", "invalid_request"
            )
        expires = datetime.now(UTC) + timedelta(days=days) if days else None
        try:
            key, info = gateway.keys.create(
                tenant=tenant, role=role, name=name, models=models, expires_at=expires
            )
        except ValueError as exc:
            raise GatewayError(400, str(exc), "invalid_request") from None
        return JSONResponse({"key": key, **info.to_dict()}, status_code=201)

    @app.post("/v1/admin/keys/{key_id}/revoke")
    async def admin_revoke_key(request: Request, key_id: str) -> dict[str, Any]:
        gateway.authorize(request, "keys:manage")
        gateway.keys.revoke(key_id)
        return {"key_id": key_id, "revoked": True}

    @app.post("/v1/admin/keys/{key_id}/rotate")
    async def admin_rotate_key(request: Request, key_id: str) -> JSONResponse:
        gateway.authorize(request, "keys:manage")
        key, info = gateway.keys.rotate(key_id)
        return JSONResponse({"key": key, **info.to_dict()}, status_code=201)

    async def admit(request: Request) -> tuple[Principal, dict[str, Any], str, bool]:
        """Steps every generation route shares: authenticate, authorize, count
        against quotas, read the bounded body, check model and stream."""
        principal = gateway.authorize(request, "chat")
        gateway.quotas.admit(principal)
        gateway.quotas.enter(principal)
        request.state.in_flight = True
        body = await _read_json(request, settings.max_body_bytes)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise GatewayError(
                400, "'model' must be a non-empty string", "invalid_request", "model"
            )
        if model not in gateway.routes:
            raise GatewayError(404, f"model {model!r} does not exist", "model_not_found", "model")
        if not principal.may_use(model):
            raise GatewayError(403, f"this key may not use model {model!r}", "model_not_allowed")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise GatewayError(400, "'stream' must be a boolean", "invalid_request", "stream")
        return principal, body, model, stream

    async def forward(
        request: Request, principal: Principal, endpoint: Endpoint, model: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        started = time.perf_counter()
        current_tenant.set(principal.tenant)  # whose key watermarks local models' text
        answer = await _call_upstreams(
            gateway, endpoint, model, {**body, "model": gateway.upstream_models[model]}
        )
        request.state.upstream_ms = (time.perf_counter() - started) * 1000
        answer["model"] = model
        usage = answer.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
            gateway.quotas.charge(principal, usage["total_tokens"])
        return answer

    def reply(answer: dict[str, Any], stream: bool, actions: tuple[Action, Action]) -> Response:
        headers = {
            "x-mantlet-input-action": actions[0].value,
            "x-mantlet-output-action": actions[1].value,
        }
        if stream:
            return StreamingResponse(
                _as_sse(answer), media_type="text/event-stream", headers=headers
            )
        return JSONResponse(answer, headers=headers)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        principal, body, model, stream = await admit(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise GatewayError(
                400, "'messages' must be a non-empty list", "invalid_request", "messages"
            )
        _check_count(messages, settings.max_messages, "messages")
        verdict_in = await gateway.check_input(messages, tenant=principal.tenant)
        if verdict_in.blocked:
            raise GatewayError(400, _blocked_message("request", verdict_in), "content_blocked")
        sanitized = list(verdict_in.sanitized_messages or messages)
        metadata: dict[str, Any] = {}
        if settings.canary:
            canary = make_canary()
            sanitized = _with_canary(sanitized, canary)
            metadata["canaries"] = [canary]
        upstream_body = {**body, "messages": sanitized}
        answer = await forward(request, principal, "chat/completions", model, upstream_body)
        verdict_out = await _guard_choices(gateway, answer, principal.tenant, metadata)
        return reply(answer, stream, (verdict_in.action, verdict_out))

    async def guarded_texts(
        body: dict[str, Any], field: str, tenant: str
    ) -> tuple[dict[str, Any], Action]:
        """Validate a string-or-list-of-strings field, check it on the input
        side and return the body with the sanitized texts in the same shape.
        Token-id arrays cannot be scanned, so they are refused (fail closed)."""
        raw = body.get(field)
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise GatewayError(
                400, f"'{field}' must be a string or a list of strings", "invalid_request", field
            )
        _check_count(texts, settings.max_messages, field)
        sanitized, action = await _guard_texts(gateway, texts, tenant)
        return {**body, field: sanitized[0] if isinstance(raw, str) else sanitized}, action

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        principal, body, model, stream = await admit(request)
        upstream_body, action_in = await guarded_texts(body, "prompt", principal.tenant)
        answer = await forward(request, principal, "completions", model, upstream_body)
        verdict_out = await _guard_choices(gateway, answer, principal.tenant)
        return reply(answer, stream, (action_in, verdict_out))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        principal, body, model, _ = await admit(request)
        upstream_body, action_in = await guarded_texts(body, "input", principal.tenant)
        answer = await forward(request, principal, "embeddings", model, upstream_body)
        return reply(answer, False, (action_in, Action.ALLOW))

    return app


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"request body larger than {limit} bytes", "body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, f"request body larger than {limit} bytes", "body_too_large")
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise GatewayError(400, "request body is not valid UTF-8", "invalid_encoding") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GatewayError(
            400,
            f"request body is not valid JSON (line {exc.lineno}, column {exc.colno})",
            "invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise GatewayError(400, "request body must be a JSON object", "invalid_request")
    return data


async def _call_upstreams(
    gateway: Gateway, endpoint: Endpoint, model: str, body: dict[str, Any]
) -> dict[str, Any]:
    """The route's upstreams in order; the first well-formed answer wins."""
    expected = "data" if endpoint == "embeddings" else "choices"
    failures = []
    for name in gateway.routes[model]:
        try:
            answer = await gateway.providers[name].send(endpoint, {**body, "stream": False})
        except ProviderError as exc:
            failures.append(str(exc))
            gateway.metrics.upstream_errors.labels(name).inc()
            continue
        if not isinstance(answer.get(expected), list):
            failures.append(f"upstream {name!r} sent no {expected}")
            continue
        return answer
    raise GatewayError(502, "; ".join(failures) or "no upstream answered", "upstream_error")


async def _guard_texts(gateway: Gateway, texts: list[str], tenant: str) -> tuple[list[str], Action]:
    """Input check for plain prompts: each is scanned as a user message."""
    messages = [{"role": "user", "content": text} for text in texts]
    verdict = await gateway.check_input(messages, tenant=tenant)
    if verdict.blocked:
        raise GatewayError(400, _blocked_message("request", verdict), "content_blocked")
    sanitized = [str(m["content"]) for m in verdict.sanitized_messages or messages]
    return sanitized, verdict.action


async def _guard_choices(
    gateway: Gateway,
    answer: dict[str, Any],
    tenant: str,
    metadata: Mapping[str, Any] | None = None,
) -> Action:
    """Output check of every choice (chat message or completion text); redact
    or replace it in place."""
    worst = Action.ALLOW
    for choice in answer["choices"]:
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            verdict = await gateway.check_output(choice["text"], tenant, metadata)
            if verdict.blocked:
                choice["text"], choice["finish_reason"] = BLOCKED_NOTICE, "content_filter"
            elif verdict.sanitized_text is not None:
                choice["text"] = verdict.sanitized_text
        elif isinstance(choice.get("message"), dict):
            message = choice["message"]
            message.setdefault("role", "assistant")
            verdict = await gateway.check_output([message], tenant, metadata)
            if verdict.blocked:
                choice["message"] = {"role": "assistant", "content": BLOCKED_NOTICE}
                choice["finish_reason"] = "content_filter"
            elif verdict.sanitized_messages:
                choice["message"] = verdict.sanitized_messages[0]
        else:
            continue
        worst = Action.most_severe([worst, verdict.action])
    return worst


def _check_count(items: list[Any], limit: int, param: str) -> None:
    if len(items) > limit:
        raise GatewayError(
            400, f"'{param}' has {len(items)} items; the limit is {limit}", "too_many_items", param
        )


def _with_canary(messages: list[dict[str, Any]], canary: str) -> list[dict[str, Any]]:
    """The request's messages with the canary sentence in the system prompt
    (appended to a leading string system message, or as a new first one)."""
    instruction = canary_instruction(canary)
    first = messages[0] if messages else {}
    if first.get("role") in ("system", "developer") and isinstance(first.get("content"), str):
        return [{**first, "content": f"{first['content']}\n\n{instruction}"}, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _blocked_message(what: str, verdict: Verdict) -> str:
    kinds = sorted({f.kind for f in verdict.findings if f.action is Action.BLOCK})
    reason = f" ({', '.join(kinds)})" if kinds else " (a detector failed; the policy fails closed)"
    return f"{what} blocked by policy{reason}"


async def _as_sse(answer: dict[str, Any]) -> AsyncIterator[bytes]:
    """Replays a checked answer as OpenAI stream events (chat chunks, or
    text_completion events for /v1/completions)."""
    base: dict[str, Any] = {k: answer[k] for k in ("id", "created", "model") if k in answer}
    chat = answer.get("object") != "text_completion"
    base["object"] = "chat.completion.chunk" if chat else "text_completion"
    for choice in answer["choices"]:
        index = choice.get("index", 0)
        if chat:
            message = choice.get("message", {})
            delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
            if message.get("tool_calls"):
                delta["tool_calls"] = [
                    {**call, "index": i} for i, call in enumerate(message["tool_calls"])
                ]
            first: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": None}
            last: dict[str, Any] = {"index": index, "delta": {}}
        else:
            first = {"index": index, "text": choice.get("text", ""), "finish_reason": None}
            last = {"index": index, "text": ""}
        last["finish_reason"] = choice.get("finish_reason")
        for part in (first, last):
            event = {**base, "choices": [part]}
            yield f"data: {json.dumps(event)}\n\n".encode()
    yield b"data: [DONE]\n\n"
