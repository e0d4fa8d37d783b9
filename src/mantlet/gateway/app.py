"""The gateway application: ``create_app(settings)`` builds a FastAPI app with
nothing created at import time.

Request path for ``POST /v1/chat/completions``:
authenticate (API key) → authorize (role permission, model) → parse and bound
the body → guard the input (block, or forward the redacted messages) →
upstream, with ordered fallbacks → guard the output → answer, streamed or not.
Streamed answers go through a StreamGuard (``streaming.py``): text leaves
only after the guard has scanned what follows it, so no unscanned token and no
part of a split secret reaches the caller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from mantlet.audit import merkle
from mantlet.core.types import Action, Verdict
from mantlet.crypto.tenant_keys import TenantErased
from mantlet.detectors import canary as canaries
from mantlet.errors import InvalidInputError
from mantlet.gateway import responses_api
from mantlet.gateway.accountability import (
    Accountability,
    AuditUnavailable,
    body_digest,
    now_rfc3339,
)
from mantlet.gateway.bodies import read_json
from mantlet.gateway.draining import Drain
from mantlet.gateway.errors import GatewayError, error_response, install_handlers, quoted_name
from mantlet.gateway.keys import AuthError, KeyStore, Principal
from mantlet.gateway.metrics import Metrics
from mantlet.gateway.mfa import OTP_HEADER, MfaResult, TotpStore
from mantlet.gateway.middleware import Answer, Outcome, RequestMeta
from mantlet.gateway.providers import (
    Endpoint,
    Provider,
    ProviderError,
    UpstreamRefused,
    build_provider,
)
from mantlet.gateway.providers.base import stream_chunks
from mantlet.gateway.pseudonymize import GatewayPrivacy
from mantlet.gateway.quotas import Quotas
from mantlet.gateway.roles import role_table
from mantlet.gateway.scan_route import scan_router
from mantlet.gateway.settings import GatewaySettings
from mantlet.gateway.streaming import MalformedChunk, StreamBlocked, StreamRelay
from mantlet.gateway.tokens import TokenVerifier
from mantlet.gateway.watermark_routes import watermark_router
from mantlet.pipeline.shield import Shield, StagedCheck
from mantlet.privacy import StreamRestorer
from mantlet.watermark import current_tenant

# Permissions whose routes want a second factor from administrators (reading
# every tenant's audit records too; see Gateway.authorize).
_MFA_PERMISSIONS = frozenset({"keys:manage", "audit:checkpoint"})
# How often the audit log's SQLite write-ahead log is folded into the database.
_WAL_CHECKPOINT_S = 1.0
# Routes that decide nothing and are not recorded in the audit log.
_UNAUDITED = frozenset({"/healthz", "/readyz", "/.well-known/mantlet/keys.json"})
# Each request's verdicts, collected for its audit record.
_VERDICTS: ContextVar[list[Verdict] | None] = ContextVar("mantlet_verdicts", default=None)
BLOCKED_NOTICE = "[blocked by Mantlet policy]"
_AUDIT_DOWN = "audit log unavailable; request refused"
access_log = logging.getLogger("mantlet.gateway.access")
log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Everything a request needs, built once per app."""

    settings: GatewaySettings
    shield: Shield
    keys: KeyStore
    providers: dict[str, Provider]
    quotas: Quotas
    trail: Accountability
    tokens: TokenVerifier | None = None
    metrics: Metrics = field(default_factory=Metrics)
    routes: dict[str, list[str]] = field(default_factory=dict)
    upstream_models: dict[str, str] = field(default_factory=dict)
    privacy: GatewayPrivacy | None = None
    mfa: TotpStore | None = None
    roles: dict[str, frozenset[str]] = field(default_factory=lambda: role_table({}))
    tenant_shields: dict[str, Shield] = field(default_factory=dict)
    # HTTP requests this process is serving, streams included.
    open_requests: int = 0

    @property
    def alone(self) -> bool:
        """Only the asking request is open: the audit write may run on the
        event loop, since no other request is waiting on it (under load,
        writes are batched by the committer's thread instead)."""
        return self.open_requests <= 1

    def max_body_bytes(self, tenant: str) -> int:
        own = self.settings.quotas.tenants.get(tenant)
        return own.max_body_bytes if own and own.max_body_bytes else self.settings.max_body_bytes

    def max_messages(self, tenant: str) -> int:
        own = self.settings.quotas.tenants.get(tenant)
        return own.max_messages if own and own.max_messages else self.settings.max_messages

    def shield_for(self, tenant: str) -> Shield:
        """The tenant's own policy (``tenant_policies``), else the gateway's."""
        return self.tenant_shields.get(tenant, self.shield)

    def policy_of(self, tenant: str | None) -> str:
        """The policy reference a tenant's requests are checked against."""
        return self.settings.tenant_policies.get(tenant or "", self.settings.policy)

    def resolve(self, model: str) -> tuple[str, str] | None:
        """(route, upstream model) for a requested model: its own route, else
        the first wildcard route (``openai/*``) whose prefix it extends. What
        the wildcard matched goes upstream, into the route's
        ``upstream_model`` where that has a ``*``."""
        if model in self.routes:
            return model, self.upstream_models[model]
        for pattern, template in self.upstream_models.items():
            prefix = pattern[:-1]
            if pattern.endswith("*") and model.startswith(prefix) and len(model) > len(prefix):
                return pattern, template.replace("*", model[len(prefix) :])
        return None

    def may_use(self, principal: Principal, model: str) -> bool:
        """A key allowed a model by name, or the wildcard route serving it."""
        resolved = self.resolve(model)
        return resolved is not None and (principal.may_use(model) or principal.may_use(resolved[0]))

    async def start_input(
        self,
        content: Any,
        tenant: str,
        metadata: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> StagedCheck:
        """The input check's gate; ``finish_input`` gives the whole verdict."""
        return await self.shield_for(tenant).astart_input(
            content, tenant=tenant, metadata=metadata, fields=fields
        )

    async def finish_input(self, check: StagedCheck) -> Verdict:
        """The whole verdict, counted and recorded once however often asked."""
        first = not check.settled
        verdict = await check.final()
        if first:
            self.metrics.observe_verdict(verdict)
            _note_verdict(verdict)
        return verdict

    async def settle_now(self, check: StagedCheck) -> None:
        """Waits for the whole verdict before the upstream call when there is
        nothing to gain by overlapping (a blocked gate) or the settings say so."""
        if check.gate.blocked or not self.settings.overlap_flag_only:
            _refuse_if_blocked(await self.finish_input(check))

    async def check_input(
        self,
        content: Any,
        tenant: str,
        *,
        documents: list[str] | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """The whole input verdict at once (``/v1/scan``: no upstream call to overlap)."""
        verdict = await self.shield_for(tenant).acheck_input(
            content, documents=documents, fields=fields, tenant=tenant
        )
        self.metrics.observe_verdict(verdict)
        _note_verdict(verdict)
        return verdict

    async def check_output(
        self, content: Any, tenant: str, metadata: Mapping[str, Any] | None = None
    ) -> Verdict:
        verdict = await self.shield_for(tenant).acheck_output(
            content, tenant=tenant, metadata=metadata
        )
        self.metrics.observe_verdict(verdict)
        _note_verdict(verdict)
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
        if not self.authorizes(principal, permission):
            raise GatewayError(
                403, f"role {principal.role!r} may not use this route", "permission_denied"
            )
        if permission in _MFA_PERMISSIONS or (
            permission == "audit:read" and self.authorizes(principal, "audit:all-tenants")
        ):
            self.second_factor(request, principal)
        request.state.principal = principal
        return principal

    def second_factor(self, request: Request, principal: Principal) -> None:
        """Admin routes: an enrolled key must send a current TOTP code; with
        ``admin_mfa: required`` every key must be enrolled and every token
        must carry a second factor in its ``amr`` claim."""
        mode = self.settings.admin_mfa
        if mode == "off" or self.mfa is None:
            return
        if principal.key_id.startswith("oidc:"):
            if mode == "required" and not principal.mfa:
                raise GatewayError(
                    403, "this route needs a token issued after a second factor", "mfa_required"
                )
            return
        result = self.mfa.check(principal.key_id, request.headers.get(OTP_HEADER))
        if result is MfaResult.OK or (result is MfaResult.NOT_ENROLLED and mode == "enrolled"):
            return
        if result is MfaResult.NOT_ENROLLED:
            raise GatewayError(
                403,
                "this route needs a key enrolled for a second factor (mantlet keys mfa-enroll)",
                "mfa_not_enrolled",
            )
        if result is MfaResult.LOCKED:
            raise GatewayError(
                403, "second factor locked after too many wrong codes; enrol again", "mfa_locked"
            )
        raise GatewayError(
            401, f"a current one-time code is required in the {OTP_HEADER} header", "mfa_required"
        )

    def authorizes(self, principal: Principal, permission: str) -> bool:
        return permission in self.roles.get(principal.role, frozenset())

    def may_see(self, principal: Principal, tenant: str | None) -> bool:
        """Audit data of ``tenant``: one's own, or every tenant's with the permission."""
        return self.authorizes(principal, "audit:all-tenants") or (
            tenant is not None and tenant == principal.tenant
        )


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
    accountability: Accountability | None = None,
) -> FastAPI:
    keys = keys or KeyStore(settings.resolved_database_url, server_secret(settings.data_dir))
    built = dict(providers) if providers is not None else {}
    for upstream in settings.upstreams:
        if upstream.name not in built:
            built[upstream.name] = build_provider(upstream)
    default_shield = shield or Shield.from_policy(settings.policy)
    by_policy = {settings.policy: default_shield}
    for reference in settings.tenant_policies.values():
        if reference not in by_policy:  # one Shield per distinct policy, built (and checked) now
            by_policy[reference] = Shield.from_policy(reference)
    gateway = Gateway(
        settings=settings,
        shield=default_shield,
        tenant_shields={t: by_policy[r] for t, r in settings.tenant_policies.items()},
        keys=keys,
        providers=built,
        quotas=Quotas(
            storage_uri=settings.quotas.storage_uri,
            requests=settings.quotas.requests_per_key,
            requests_by_role=settings.quotas.requests_per_key_by_role,
            tenant_requests=settings.quotas.requests_per_tenant,
            tenant_tokens=settings.quotas.tokens_per_tenant,
            key_tokens=settings.quotas.tokens_per_key,
            concurrent=settings.quotas.concurrent_per_key,
            tenants={
                tenant: limits.quota_overrides()
                for tenant, limits in settings.quotas.tenants.items()
            },
        ),
        trail=accountability or Accountability.open(settings, background_wal=True),
        tokens=TokenVerifier(settings.oidc) if settings.oidc else None,
        routes={r.model: list(r.upstreams) for r in settings.routes},
        upstream_models={
            r.model: r.upstream_model or ("*" if r.model.endswith("*") else r.model)
            for r in settings.routes
        },
        privacy=GatewayPrivacy(settings.privacy, settings.data_dir) if settings.privacy else None,
        roles=role_table(settings.roles),
        mfa=TotpStore(keys.engine, server_secret(settings.data_dir))
        if settings.admin_mfa != "off"
        else None,
    )

    trail = gateway.trail

    async def publish_checkpoints(interval: float) -> None:
        published = -1
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):  # retried next interval
                if trail.log.head().size != published:
                    published = (await asyncio.to_thread(trail.publish_checkpoint)).size

    async def fold_wal() -> None:
        """The audit log's SQLite WAL is folded in here, off the request path
        (a commit that did it itself stalled for several milliseconds)."""
        while True:
            await asyncio.sleep(_WAL_CHECKPOINT_S)
            try:
                await asyncio.to_thread(trail.log.checkpoint_wal)
            except Exception as exc:  # noqa: BLE001 - retried next interval, but said
                log.warning("audit log WAL checkpoint failed (%s)", type(exc).__name__)

    drain = Drain()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Configuration changes are admin actions too: each start records
        # the digest of the settings it runs with.
        config = settings.model_dump(mode="json")
        await trail.append(
            {
                "v": 1,
                "type": "admin",
                "time": now_rfc3339(),
                "action": "config.loaded",
                "config_sha256": body_digest(config),
                "policy": settings.policy,
            }
        )
        await asyncio.to_thread(trail.publish_checkpoint)
        interval = settings.audit.checkpoint_interval_s
        task = asyncio.create_task(publish_checkpoints(interval)) if interval else None
        wal_task = asyncio.create_task(fold_wal())
        # What start-up built (models, compiled rule tables, the app) lives as
        # long as the process: moved out of the collector's generations, it is
        # no longer traversed by every full collection during requests.
        gc.collect()
        gc.freeze()
        drain.install()
        yield
        drain.started = True
        await drain.settled(timeout=5)
        if _BACKGROUND:  # audit records of streams the shutdown cut, still being written
            await asyncio.wait(set(_BACKGROUND), timeout=10)
        wal_task.cancel()
        if task:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(trail.publish_checkpoint)
        for provider in gateway.providers.values():
            await provider.aclose()
        await gateway.quotas.aclose()

    # No schema or docs routes: every route but liveness, readiness and the
    # public signing keys answers only an authenticated caller.
    app = FastAPI(
        title="Mantlet gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.gateway = gateway
    install_handlers(app)
    app.include_router(watermark_router(gateway))
    app.include_router(scan_router(gateway))

    def begin_request() -> None:
        _VERDICTS.set([])
        gateway.open_requests += 1

    def finish_request(request: Request, outcome: Outcome) -> None:
        gateway.open_requests -= 1
        state = request.state
        principal = getattr(state, "principal", None)
        if principal is not None and getattr(state, "in_flight", False):
            gateway.quotas.leave(principal)
        metrics = gateway.metrics
        metrics.child(metrics.requests, outcome.route, str(outcome.status)).inc()
        metrics.child(metrics.latency, outcome.route).observe(outcome.total_ms / 1000)
        if outcome.status == 429 and "x-mantlet-upstream-status" not in outcome.headers:
            gateway.metrics.limit_rejections.inc()  # ours, not an upstream's passed on
        # One JSON line per request: identifiers, outcome and timings, never content.
        access_log.info(
            json.dumps(
                {
                    "event": "request",
                    "request_id": state.request_id,
                    "method": request.method,
                    "route": outcome.route,
                    "status": outcome.status,
                    "key_id": principal.key_id if principal else None,
                    "tenant": principal.tenant if principal else None,
                    "input_action": outcome.headers.get("x-mantlet-input-action"),
                    "output_action": outcome.headers.get("x-mantlet-output-action"),
                    "latency_ms": round(outcome.total_ms, 2),
                    "overhead_ms": round(outcome.overhead_ms, 2),
                }
            )
        )

    async def audit_plain(request: Request, answer: Answer, label: str) -> Answer:
        """Records a request that produced no model answer (a refusal, an
        admin action, a listing). If the record cannot be written the caller
        gets 503 instead (fail closed)."""
        error = None
        parsed: Any = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(answer.body) if answer.body else None
        if answer.status >= 400 and isinstance(parsed, dict):
            error = (parsed.get("error") or {}).get("code")
        digest = body_digest(parsed) if isinstance(parsed, dict) else body_digest(answer.body)
        record = _request_record(request, label, answer.status, digest, error)
        try:
            request.state.audit_index = await trail.append(record, inline=gateway.alone)
        except AuditUnavailable:
            failed = error_response(503, _AUDIT_DOWN, "audit_unavailable")
            return Answer(503, {"content-type": "application/json"}, bytes(failed.body))
        answer.headers["x-mantlet-audit-index"] = str(request.state.audit_index)
        return answer

    app.add_middleware(
        RequestMeta,
        audit=audit_plain,
        begin=begin_request,
        finish=finish_request,
        unaudited=_UNAUDITED,
    )

    async def audit_answer(
        request: Request,
        principal: Principal,
        model: str,
        answer: dict[str, Any],
        upstream_body: dict[str, Any],
        sent: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        """Records an answered request with its manifest (and, if configured,
        its encrypted payload) in one transaction; returns the headers.
        ``sent`` is the body the caller receives, when it is not ``answer``
        itself (the Responses API's shape of the same answer)."""
        sent = answer if sent is None else sent
        texts = _answer_texts(answer)
        holder: dict[str, str] = {}
        extras = []
        if trail.provenance and texts is not None:
            extras.append(
                trail.manifest_writer(
                    holder,
                    tenant=principal.tenant,
                    texts=texts,
                    model=model,
                    upstream=getattr(request.state, "upstream", None),
                    request_id=request.state.request_id,
                    watermark=getattr(request.state, "watermark", None),
                    tool_calls=_answer_tool_calls(answer),
                    reasoning=_answer_reasoning(answer),
                )
            )
        try:
            payload = trail.payload_writer(
                principal.tenant, {"request": upstream_body, "response": sent}
            )
        except TenantErased:
            message = "this tenant was erased; the policy requires storing payloads"
            raise GatewayError(403, message, "tenant_erased") from None
        if payload is not None:
            extras.append(payload)

        def extra(conn: Any, seq: int) -> None:
            for write in extras:
                write(conn, seq)

        record = _request_record(request, request.scope["route"].path, 200, body_digest(sent))
        try:
            index = await trail.append(record, extra, inline=gateway.alone)
        except AuditUnavailable:
            raise GatewayError(503, _AUDIT_DOWN, "audit_unavailable") from None
        request.state.audited = True
        headers = {"x-mantlet-audit-index": str(index)}
        if "jws" in holder:
            headers["x-mantlet-provenance"] = holder["jws"]
        return headers

    @app.get("/.well-known/mantlet/keys.json")
    async def public_keys() -> dict[str, Any]:
        """Public keys that verify manifests (JWKS); public by design."""
        return {**trail.signing_key.jwks(), "checkpoint_verifier": trail.signer.verifier_key}

    @app.get("/v1/provenance/{request_id}")
    async def provenance(request: Request, request_id: str) -> dict[str, Any]:
        principal = _authorize_any(gateway, request, ("chat", "audit:read"))
        stored = trail.manifest(request_id)
        if stored is None or not gateway.may_see(principal, stored[0]):
            raise GatewayError(404, f"no manifest for request {request_id!r}", "not_found")
        token = stored[1]
        payload = token.split(".")[1]
        manifest = json.loads(_b64url_decode(payload))
        return {"request_id": request_id, "manifest": manifest, "jws": token}

    @app.get("/v1/audit/checkpoint")
    async def audit_checkpoint(request: Request) -> dict[str, Any]:
        gateway.authorize(request, "audit:read")
        note = trail.log.latest_checkpoint()
        if note is None:
            raise GatewayError(404, "no checkpoint published yet", "not_found")
        return {"note": note, "verifier_key": trail.signer.verifier_key}

    @app.post("/v1/audit/checkpoint")
    async def audit_publish(request: Request) -> dict[str, Any]:
        gateway.authorize(request, "audit:checkpoint")
        checkpoint = await asyncio.to_thread(trail.publish_checkpoint)
        return {"note": checkpoint.note, "size": checkpoint.size}

    @app.get("/v1/audit/records")
    async def audit_records(request: Request) -> dict[str, Any]:
        principal = gateway.authorize(request, "audit:read")
        start = _int_param(request, "start", 0)
        limit = min(_int_param(request, "limit", 100), 1000)
        tenant = request.query_params.get("tenant")
        if not gateway.authorizes(principal, "audit:all-tenants"):
            tenant = principal.tenant
        rows = []
        for record in trail.log.records(start=start, tenant=tenant, batch=limit):
            rows.append({"seq": record.seq, "record": json.loads(record.body)})
            if len(rows) >= limit:
                break
        return {"object": "list", "data": rows, "tree_size": trail.log.head().size}

    @app.get("/v1/audit/proof/inclusion")
    async def audit_inclusion(request: Request) -> dict[str, Any]:
        principal = gateway.authorize(request, "audit:read")
        index = _int_param(request, "index", None)
        size = _int_param(request, "size", trail.log.head().size)
        record = trail.log.record(index)
        if record is None or not gateway.may_see(principal, record.tenant):
            raise GatewayError(404, f"no record {index}", "not_found")
        try:
            path = trail.log.inclusion_proof(index, size)
            root = trail.log.root(size)
        except merkle.ProofError as exc:
            raise GatewayError(400, str(exc), "invalid_request") from None
        return {
            "index": index,
            "tree_size": size,
            "leaf_hash": record.leaf_hash.hex(),
            "root": root.hex(),
            "path": [p.hex() for p in path],
            "record": json.loads(record.body),
        }

    @app.get("/v1/audit/proof/consistency")
    async def audit_consistency(request: Request) -> dict[str, Any]:
        gateway.authorize(request, "audit:read")
        first = _int_param(request, "first", None)
        second = _int_param(request, "second", trail.log.head().size)
        try:
            proof = trail.log.consistency_proof(first, second)
            roots = trail.log.root(first), trail.log.root(second)
        except merkle.ProofError as exc:
            raise GatewayError(400, str(exc), "invalid_request") from None
        return {
            "first": first,
            "second": second,
            "first_root": roots[0].hex(),
            "second_root": roots[1].hex(),
            "proof": [p.hex() for p in proof],
        }

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

    @app.get("/v1/models/{model:path}")
    async def retrieve_model(request: Request, model: str) -> dict[str, Any]:
        """One model, as ``client.models.retrieve`` asks; a model the key may
        not use is reported as missing, like one that does not exist."""
        principal = gateway.authorize(request, "models")
        if not gateway.may_use(principal, model):
            raise GatewayError(404, f"model {model!r} does not exist", "model_not_found", "model")
        return {"id": model, "object": "model", "created": 0, "owned_by": "mantlet"}

    @app.get("/v1/admin/keys")
    async def admin_list_keys(request: Request) -> dict[str, Any]:
        gateway.authorize(request, "keys:manage")
        tenant = request.query_params.get("tenant")
        return {"object": "list", "data": [i.to_dict() for i in gateway.keys.list(tenant=tenant)]}

    @app.post("/v1/admin/keys")
    async def admin_create_key(request: Request) -> JSONResponse:
        gateway.authorize(request, "keys:manage")
        body = await read_json(request, settings.max_body_bytes)
        tenant, role, name = body.get("tenant"), body.get("role", "app"), body.get("name", "")
        models, days = body.get("models"), body.get("expires_in_days")
        if not isinstance(tenant, str) or not isinstance(role, str) or not isinstance(name, str):
            raise GatewayError(
                400, "'tenant', 'role' and 'name' must be strings", "invalid_request"
            )
        if role not in gateway.roles:
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
        request.state.admin_action = {
            "action": "keys.create",
            "key_id": info.key_id,
            "key_tenant": tenant,
            "key_role": role,
        }
        return JSONResponse({"key": key, **info.to_dict()}, status_code=201)

    @app.post("/v1/admin/keys/{key_id}/revoke")
    async def admin_revoke_key(request: Request, key_id: str) -> dict[str, Any]:
        gateway.authorize(request, "keys:manage")
        request.state.admin_action = {"action": "keys.revoke", "key_id": key_id}
        gateway.keys.revoke(key_id)
        return {"key_id": key_id, "revoked": True}

    @app.post("/v1/admin/keys/{key_id}/rotate")
    async def admin_rotate_key(request: Request, key_id: str) -> JSONResponse:
        gateway.authorize(request, "keys:manage")
        request.state.admin_action = {"action": "keys.rotate", "key_id": key_id}
        key, info = gateway.keys.rotate(key_id)
        request.state.admin_action["new_key_id"] = info.key_id
        if gateway.mfa is not None:
            gateway.mfa.transfer(key_id, info.key_id)
        return JSONResponse({"key": key, **info.to_dict()}, status_code=201)

    @app.post("/v1/admin/keys/{key_id}/mfa")
    async def admin_enroll_mfa(request: Request, key_id: str) -> JSONResponse:
        """Enrol (or renew) a key's second factor; the otpauth URI is shown once.
        With ``admin_mfa: required`` only an already verified administrator
        may do this; a key that is not enrolled must be enrolled from the CLI,
        on the server."""
        gateway.authorize(request, "keys:manage")
        if gateway.mfa is None:
            raise GatewayError(400, "admin_mfa is off in the gateway settings", "invalid_request")
        if gateway.keys.info(key_id) is None:
            raise GatewayError(404, f"no API key with id {key_id[:16]!r}", "not_found")
        request.state.admin_action = {"action": "keys.mfa_enroll", "key_id": key_id}
        uri = gateway.mfa.enroll(key_id)
        return JSONResponse({"key_id": key_id, "otpauth_uri": uri}, status_code=201)

    async def admit(request: Request) -> tuple[Principal, dict[str, Any], str, bool]:
        """Steps every generation route shares: authenticate, authorize, count
        against quotas, read the bounded body, check model and stream."""
        principal = gateway.authorize(request, "chat")
        await gateway.quotas.admit(principal)
        gateway.quotas.enter(principal)
        request.state.in_flight = True
        body = await read_json(request, gateway.max_body_bytes(principal.tenant))
        model = body.get("model")
        request.state.model = model if isinstance(model, str) else None
        if not isinstance(model, str) or not model:
            raise GatewayError(
                400, "'model' must be a non-empty string", "invalid_request", "model"
            )
        if gateway.resolve(model) is None:
            raise GatewayError(404, f"model {model!r} does not exist", "model_not_found", "model")
        if not gateway.may_use(principal, model):
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
        answer, upstream = await _call_upstreams(
            gateway,
            endpoint,
            model,
            {**body, "model": _upstream_model(gateway, model)},
            principal.tenant,
        )
        request.state.upstream_ms = (time.perf_counter() - started) * 1000
        request.state.upstream = upstream
        if isinstance(answer.get("mantlet_watermark"), dict):  # scheme and key id, never the key
            request.state.watermark = answer["mantlet_watermark"]
        answer["model"] = model
        usage = answer.get("usage")
        counts = (
            {k: v for k, v in usage.items() if k.endswith("_tokens") and isinstance(v, int)}
            if isinstance(usage, dict)
            else {}
        )
        if "total_tokens" not in counts:
            # No usage from upstream: estimate (about four characters a token)
            # so budgets still bind; the audit record says it is an estimate.
            chars = len(json.dumps(body.get("messages") or body.get("prompt") or body.get("input")))
            chars += sum(len(t) for t in _answer_texts(answer) or [])
            counts = {"estimated_total_tokens": max(1, chars // 4)}
        request.state.usage = counts
        await gateway.quotas.charge(
            principal, counts.get("total_tokens", counts.get("estimated_total_tokens", 0))
        )
        return answer

    async def forward_checked(
        request: Request,
        principal: Principal,
        endpoint: Endpoint,
        model: str,
        body: dict[str, Any],
        check: StagedCheck,
    ) -> tuple[dict[str, Any], Verdict]:
        """``forward`` while the input check's flag-only layers finish; the
        answer is withheld (400) if one of them failed."""
        try:
            answer = await forward(request, principal, endpoint, model, body)
        finally:
            verdict = await gateway.finish_input(check)
        _refuse_if_blocked(verdict)
        return answer, verdict

    async def reply(
        request: Request,
        principal: Principal,
        answer: dict[str, Any],
        stream: bool,
        actions: tuple[Action, Action],
        upstream_body: dict[str, Any],
        shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Response:
        sent = shape(answer) if shape else answer
        headers = await audit_answer(
            request, principal, answer["model"], answer, upstream_body, sent
        )
        headers["x-mantlet-input-action"] = actions[0].value
        headers["x-mantlet-output-action"] = actions[1].value
        if stream:
            return StreamingResponse(
                _as_sse(answer), media_type="text/event-stream", headers=headers
            )
        return JSONResponse(sent, headers=headers)

    async def stream_reply(
        request: Request,
        principal: Principal,
        endpoint: Endpoint,
        model: str,
        upstream_body: dict[str, Any],
        metadata: dict[str, Any],
        action_in: Action,
        restorer: Callable[[], StreamRestorer] | None = None,
        input_check: StagedCheck | None = None,
        translate: Callable[[AsyncGenerator[bytes, None]], AsyncIterator[bytes]] | None = None,
    ) -> Response:
        """Streams the upstream's answer through the output guard as it
        arrives. Upstream fallbacks apply until the first chunk; the audit
        record and the manifest are written when the stream ends. An
        ``input_check`` still running settles before the first event is sent."""
        started = time.perf_counter()
        body = {**upstream_body, "model": _upstream_model(gateway, model)}
        current_tenant.set(principal.tenant)  # whose key watermarks local models' text
        try:
            chunks, upstream, first = await _open_stream(
                gateway, endpoint, model, body, principal.tenant
            )
        finally:
            verdict_in = await gateway.finish_input(input_check) if input_check else None
        if verdict_in is not None:
            if verdict_in.blocked:  # a deferred layer failed: send nothing
                with contextlib.suppress(Exception):
                    await chunks.aclose()
            _refuse_if_blocked(verdict_in)
            action_in = verdict_in.action
        request.state.upstream = upstream
        request.state.audited = True  # by the stream itself, once it ends
        verdicts_in = list(_VERDICTS.get() or [])
        # Upstreams are always asked for usage (quotas count it), but as with
        # OpenAI the caller gets the usage chunk, whose choices list is
        # empty, only if it asked: code reading chunk.choices[0] would fail.
        options = upstream_body.get("stream_options")
        wants_usage = translate is not None or (
            isinstance(options, dict) and options.get("include_usage") is True
        )

        async def check(text: str) -> Verdict:
            return await gateway.check_output(text, principal.tenant, metadata)

        async def events() -> AsyncGenerator[bytes, None]:
            relay = StreamRelay(model, check, settings.stream_holdback_chars, restorer)
            failure: GatewayError | None = None
            attempted = False

            def record_of(status: int, error: str | None) -> dict[str, Any]:
                request.state.upstream_ms = (time.perf_counter() - started) * 1000
                return _request_record(
                    request,
                    request.scope["route"].path,
                    status,
                    body_digest(relay.answer()),
                    error,
                    verdicts=verdicts_in + relay.verdicts(),
                )

            drain.streams += 1
            try:
                try:
                    async for event in relay.run(first, chunks):
                        yield event
                except StreamBlocked as exc:
                    reason = _blocked_message("answer", exc.verdict) if exc.verdict else str(exc)
                    failure = GatewayError(400, reason, "content_blocked")
                except ProviderError as exc:
                    gateway.metrics.upstream_errors.labels(upstream).inc()
                    failure = GatewayError(502, str(exc), "upstream_error")
                except MalformedChunk as exc:
                    gateway.metrics.upstream_errors.labels(upstream).inc()
                    failure = GatewayError(502, f"upstream {upstream!r}: {exc}", "upstream_error")
                except Exception:  # noqa: BLE001 - the stream must still end in OpenAI's shape
                    failure = GatewayError(500, "internal error", "internal_error")
                if relay.usage:
                    request.state.usage = relay.usage
                    if isinstance(relay.usage.get("total_tokens"), int):
                        await gateway.quotas.charge(principal, relay.usage["total_tokens"])
                record = record_of(
                    200 if failure is None else failure.status, failure.code if failure else None
                )
                holder: dict[str, str] = {}
                extra = None
                if failure is None and trail.provenance:
                    extra = trail.manifest_writer(
                        holder,
                        tenant=principal.tenant,
                        texts=relay.texts(),
                        model=model,
                        upstream=upstream,
                        request_id=request.state.request_id,
                        watermark=relay.watermark,
                        tool_calls=relay.tool_calls(),
                        reasoning=relay.reasoning(),
                    )
                index: int | None = None
                attempted = True  # once submitted, the committer writes it even if we go away
                try:
                    index = await trail.append(record, extra, inline=gateway.alone)
                except AuditUnavailable:
                    failure = failure or GatewayError(503, _AUDIT_DOWN, "audit_unavailable")
                if failure is not None:
                    error = {
                        "message": str(failure),
                        "type": "invalid_request_error",
                        "code": failure.code,
                        "param": None,
                    }
                    yield f"data: {json.dumps({'error': error})}\n\n".encode()
                    return
                yield relay.closing_event(index, holder.get("jws"))
                if relay.usage_event is not None and wants_usage:
                    yield relay.usage_event
                yield b"data: [DONE]\n\n"
            finally:
                gateway.quotas.leave(principal)
                if not attempted:
                    # The client went away mid-stream, or the shutdown cut
                    # it: still record what happened, without holding
                    # anything up.
                    if drain.started:  # cut by the shutdown's grace period
                        _in_background(trail.append(record_of(503, "server_shutdown")))
                    else:
                        _in_background(trail.append(record_of(499, "client_disconnected")))
                drain.streams -= 1

        request.state.in_flight = False  # the stream leaves the quota when it ends
        headers = {
            "x-mantlet-input-action": action_in.value,
            "x-mantlet-output-action": "streamed",
            "cache-control": "no-cache",
        }
        body_events = translate(events()) if translate else events()
        return StreamingResponse(body_events, media_type="text/event-stream", headers=headers)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        principal, body, model, stream = await admit(request)
        return await chat_flow(request, principal, body, model, stream)

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        """The Responses API, served through the chat route's guard: see
        ``responses_api`` for what translates and what is refused."""
        principal, body, model, stream = await admit(request)
        chat_body = responses_api.to_chat_request(body)
        response_id = f"resp_{request.state.request_id}"
        if stream:
            translator = responses_api.StreamTranslator(body, response_id)
            return await chat_flow(
                request, principal, chat_body, model, stream, translate=translator.translate
            )
        return await chat_flow(
            request,
            principal,
            chat_body,
            model,
            stream,
            shape=lambda answer: responses_api.from_chat_answer(answer, body, response_id),
        )

    async def chat_flow(
        request: Request,
        principal: Principal,
        body: dict[str, Any],
        model: str,
        stream: bool,
        *,
        shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        translate: Callable[[AsyncGenerator[bytes, None]], AsyncIterator[bytes]] | None = None,
    ) -> Response:
        """A chat request from input guard to answer. ``shape`` turns the
        guarded answer into what the caller receives (and what the audit
        record's digest covers); ``translate`` does the same to a stream's
        events."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise GatewayError(
                400, "'messages' must be a non-empty list", "invalid_request", "messages"
            )
        _check_count(messages, gateway.max_messages(principal.tenant), "messages")
        privacy_metadata: dict[str, Any] = {}
        if gateway.privacy:  # surrogates first, so the shield's redaction cannot destroy them
            conversation = gateway.privacy.conversation(request, principal.tenant, principal.key_id)
        fields = _request_fields(body, "messages", settings.max_field_strings)
        if gateway.privacy:
            messages = await gateway.privacy.pseudonymize(messages, conversation, principal.tenant)
            fields = await gateway.privacy.pseudonymize_fields(
                fields, conversation, principal.tenant
            )
            privacy_metadata = gateway.privacy.shield_metadata(conversation)
        check = await gateway.start_input(messages, principal.tenant, privacy_metadata, fields)
        await gateway.settle_now(check)
        sanitized = list(check.gate.sanitized_messages or messages)
        metadata: dict[str, Any] = dict(privacy_metadata)  # output side skips surrogates too
        if settings.canary:
            canary = canaries.make_canary()
            sanitized = _with_canary(sanitized, canary)
            metadata["canaries"] = [canary]
        upstream_body = {
            **body,
            **fields,
            **(check.gate.sanitized_fields or {}),
            "messages": sanitized,
        }
        if stream:
            privacy = gateway.privacy
            restorer = (
                (lambda: privacy.pseudonymizer.stream_restorer(conversation)) if privacy else None
            )
            return await stream_reply(
                request,
                principal,
                "chat/completions",
                model,
                upstream_body,
                metadata,
                check.gate.action,
                restorer,
                check,
                translate,
            )
        answer, verdict_in = await forward_checked(
            request, principal, "chat/completions", model, upstream_body, check
        )
        verdict_out = await _guard_choices(gateway, answer, principal.tenant, metadata)
        if gateway.privacy:
            gateway.privacy.restore(answer, conversation)
        return await reply(
            request,
            principal,
            answer,
            stream,
            (verdict_in.action, verdict_out),
            upstream_body,
            shape,
        )

    async def guarded_texts(
        request: Request, body: dict[str, Any], field: str, tenant: str, *, pseudonymize: bool
    ) -> tuple[dict[str, Any], StagedCheck, str | None, dict[str, Any]]:
        """Validate a string-or-list-of-strings field, pseudonymize it when
        asked and configured, check it on the input side and return the body
        with the sanitized texts in the same shape (plus the conversation and
        the metadata the output side needs). Token-id arrays cannot be
        scanned, so they are refused (fail closed)."""
        raw = body.get(field)
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise GatewayError(
                400, f"'{field}' must be a string or a list of strings", "invalid_request", field
            )
        _check_count(texts, gateway.max_messages(tenant), field)
        conversation, metadata = None, {}
        if pseudonymize and gateway.privacy:
            principal = request.state.principal
            conversation = gateway.privacy.conversation(request, tenant, principal.key_id)
        fields = _request_fields(body, field, settings.max_field_strings)
        if conversation is not None and gateway.privacy:
            texts = await gateway.privacy.pseudonymize_texts(texts, conversation, tenant)
            fields = await gateway.privacy.pseudonymize_fields(fields, conversation, tenant)
            metadata = gateway.privacy.shield_metadata(conversation)
        sanitized, check = await _guard_texts(gateway, texts, tenant, metadata, fields)
        shaped = sanitized[0] if isinstance(raw, str) else sanitized
        others = check.gate.sanitized_fields or {}
        return {**body, **fields, **others, field: shaped}, check, conversation, metadata

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        principal, body, model, stream = await admit(request)
        upstream_body, check, conversation, metadata = await guarded_texts(
            request, body, "prompt", principal.tenant, pseudonymize=True
        )
        privacy = gateway.privacy if conversation is not None else None
        if stream:
            restorer = (
                (lambda: privacy.pseudonymizer.stream_restorer(conversation or ""))
                if privacy
                else None
            )
            return await stream_reply(
                request,
                principal,
                "completions",
                model,
                upstream_body,
                metadata,
                check.gate.action,
                restorer,
                check,
            )
        answer, verdict_in = await forward_checked(
            request, principal, "completions", model, upstream_body, check
        )
        verdict_out = await _guard_choices(gateway, answer, principal.tenant, metadata)
        if privacy and conversation is not None:
            privacy.restore(answer, conversation)
        return await reply(
            request, principal, answer, stream, (verdict_in.action, verdict_out), upstream_body
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        principal, body, model, _ = await admit(request)
        # Embeddings are vectors, not text a caller reads back: nothing to
        # restore, so PII is redacted by the policy rather than pseudonymized.
        upstream_body, check, _, _ = await guarded_texts(
            request, body, "input", principal.tenant, pseudonymize=False
        )
        answer, verdict_in = await forward_checked(
            request, principal, "embeddings", model, upstream_body, check
        )
        actions = (verdict_in.action, Action.ALLOW)
        return await reply(request, principal, answer, False, actions, upstream_body)

    return app


def _route_upstreams(gateway: Gateway, model: str) -> list[str]:
    resolved = gateway.resolve(model)
    assert resolved is not None  # admit() refused unknown models
    return gateway.routes[resolved[0]]


def _upstream_model(gateway: Gateway, model: str) -> str:
    resolved = gateway.resolve(model)
    assert resolved is not None  # admit() refused unknown models
    return resolved[1]


async def _call_upstreams(
    gateway: Gateway, endpoint: Endpoint, model: str, body: dict[str, Any], tenant: str
) -> tuple[dict[str, Any], str]:
    """The route's upstreams in order; the first well-formed answer wins."""
    expected = "data" if endpoint == "embeddings" else "choices"
    failures = []
    refused: UpstreamRefused | None = None
    for name in _route_upstreams(gateway, model):
        try:
            answer = await gateway.providers[name].send(endpoint, {**body, "stream": False})
        except ProviderError as exc:
            failures.append(str(exc))
            refused = _count_failure(gateway, name, exc) or refused
            continue
        if not isinstance(answer.get(expected), list):
            failures.append(f"upstream {name!r} sent no {expected}")
            continue
        return answer, name
    if refused is not None:
        raise await _refusal_error(gateway, refused, tenant)
    raise GatewayError(502, "; ".join(failures) or "no upstream answered", "upstream_error")


def _count_failure(gateway: Gateway, upstream: str, exc: ProviderError) -> UpstreamRefused | None:
    """Counts a failed upstream call: a refusal of the request is the
    caller's matter, not the upstream's health, so it has its own metric."""
    if isinstance(exc, UpstreamRefused):
        gateway.metrics.upstream_refusals.labels(upstream, str(exc.upstream_status)).inc()
        return exc
    gateway.metrics.upstream_errors.labels(upstream).inc()
    return None


async def _refusal_error(gateway: Gateway, refused: UpstreamRefused, tenant: str) -> GatewayError:
    """What the caller gets when every upstream failed and one refused the
    request itself: that status and code (not a 502, which SDKs retry at
    once), and the upstream's message once the output guard has read it,
    since it is text from the upstream like any answer."""
    message = str(refused)
    if refused.upstream_message:
        verdict = await gateway.check_output(refused.upstream_message, tenant)
        if not verdict.blocked:
            message += ": " + (verdict.sanitized_text or refused.upstream_message)
    code = refused.code if refused.code and quoted_name(refused.code) else "upstream_refused"
    headers = {"x-mantlet-upstream-status": str(refused.upstream_status)}
    if refused.retry_after:
        headers["retry-after"] = refused.retry_after
    return GatewayError(refused.upstream_status, message, code, headers=headers)


async def _open_stream(
    gateway: Gateway, endpoint: Endpoint, model: str, body: dict[str, Any], tenant: str
) -> tuple[AsyncGenerator[dict[str, Any], None], str, dict[str, Any]]:
    """The route's upstreams in order until one yields its first chunk."""
    failures = []
    refused: UpstreamRefused | None = None
    for name in _route_upstreams(gateway, model):
        chunks = stream_chunks(gateway.providers[name], endpoint, body)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            failures.append(f"upstream {name!r} sent an empty stream")
            continue
        except ProviderError as exc:
            failures.append(str(exc))
            refused = _count_failure(gateway, name, exc) or refused
            continue
        return chunks, name, first
    if refused is not None:
        raise await _refusal_error(gateway, refused, tenant)
    raise GatewayError(502, "; ".join(failures) or "no upstream answered", "upstream_error")


async def _guard_texts(
    gateway: Gateway,
    texts: list[str],
    tenant: str,
    metadata: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> tuple[list[str], StagedCheck]:
    """Input check for plain prompts: each is scanned as a user message."""
    messages = [{"role": "user", "content": text} for text in texts]
    check = await gateway.start_input(messages, tenant, metadata, fields)
    await gateway.settle_now(check)
    sanitized = [str(m["content"]) for m in check.gate.sanitized_messages or messages]
    return sanitized, check


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
            try:
                verdict = await gateway.check_output([message], tenant, metadata)
            except InvalidInputError as exc:  # the upstream's fault, not the caller's
                raise GatewayError(
                    502, f"upstream answer cannot be checked: {exc}", "upstream_error"
                ) from None
            if verdict.blocked:
                choice["message"] = {"role": "assistant", "content": BLOCKED_NOTICE}
                choice["finish_reason"] = "content_filter"
            elif verdict.sanitized_messages:
                choice["message"] = verdict.sanitized_messages[0]
        else:
            continue
        if verdict.action.severity >= Action.REDACT.severity and choice.get("logprobs"):
            # Log-probabilities spell the original tokens out one by one.
            choice["logprobs"] = None
        worst = Action.most_severe([worst, verdict.action])
    return worst


def _request_fields(body: Mapping[str, Any], handled: str, limit: int) -> dict[str, Any]:
    """The body's fields besides the model name and the one checked as
    messages or prompts. They reach the upstream too (tool declarations,
    response schemas, predicted output, stop sequences, ...), so the input
    check scans them rather than trusting them. Each string is scanned on its
    own, so their number is capped like the number of messages."""
    fields = {k: v for k, v in body.items() if k not in ("model", "stream", handled)}
    pending: list[Any] = list(fields.values())
    strings = 0
    while pending:
        node = pending.pop()
        if isinstance(node, str):
            strings += 1
        elif isinstance(node, dict):
            strings += len(node)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
        if strings > limit:
            raise GatewayError(
                400,
                f"the request's fields besides '{handled}' hold more than {limit} strings",
                "too_many_items",
            )
    return fields


def _check_count(items: list[Any], limit: int, param: str) -> None:
    if len(items) > limit:
        raise GatewayError(
            400, f"'{param}' has {len(items)} items; the limit is {limit}", "too_many_items", param
        )


def _with_canary(messages: list[dict[str, Any]], canary: str) -> list[dict[str, Any]]:
    """The request's messages with the canary sentence in the system prompt
    (appended to a leading string system message, or as a new first one)."""
    instruction = canaries.canary_instruction(canary)
    first = messages[0] if messages else {}
    if first.get("role") in ("system", "developer") and isinstance(first.get("content"), str):
        return [{**first, "content": f"{first['content']}\n\n{instruction}"}, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _refuse_if_blocked(verdict: Verdict) -> None:
    """An input verdict that blocks ends the request with OpenAI's 400."""
    if verdict.blocked:
        raise GatewayError(400, _blocked_message("request", verdict), "content_blocked")


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


_BACKGROUND: set[asyncio.Future[Any]] = set()


def _in_background(work: Awaitable[Any]) -> None:
    """Runs ``work`` to completion without awaiting it (keeps a reference so
    the task is not garbage-collected midway; failures are dropped)."""
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _note_verdict(verdict: Verdict) -> None:
    collected = _VERDICTS.get()
    if collected is not None:
        collected.append(verdict)


def _verdict_summary(verdict: Verdict) -> dict[str, Any]:
    """What the audit record keeps of a verdict: never the matched values."""
    kinds: dict[str, int] = {}
    for finding in verdict.findings:
        kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
    data = verdict.to_dict()
    return {
        "side": verdict.side.value,
        "action": verdict.action.value,
        "findings": kinds,
        "ran": data["ran"],
        "skipped": data["skipped"],
        "errored": data["errored"],
    }


def _request_record(
    request: Request,
    route: str,
    status: int,
    response_sha256: str | None,
    error: str | None = None,
    *,
    verdicts: list[Verdict] | None = None,
) -> dict[str, Any]:
    state = request.state
    principal: Principal | None = getattr(state, "principal", None)
    admin = getattr(state, "admin_action", None)
    started = getattr(state, "started", time.perf_counter())
    record: dict[str, Any] = {
        "v": 1,
        "type": "admin" if admin else "request",
        "time": now_rfc3339(),
        "request_id": state.request_id,
        "method": request.method,
        "route": route,
        "status": status,
        "principal": principal.key_id if principal else None,
        "tenant": principal.tenant if principal else None,
        "role": principal.role if principal else None,
        "model": getattr(state, "model", None),
        "upstream": getattr(state, "upstream", None),
        "decisions": [
            _verdict_summary(v)
            for v in (verdicts if verdicts is not None else _VERDICTS.get() or [])
        ],
        "tokens": getattr(state, "usage", None),
        "latency_ms": {
            "total": round((time.perf_counter() - started) * 1000, 3),
            "upstream": round(state.upstream_ms, 3),
        },
        "request_sha256": getattr(state, "request_sha256", None),
        "response_sha256": response_sha256,
        "error": error,
    }
    if principal is not None and record["decisions"]:
        # Which policy decided: tenants may each have their own.
        record["policy"] = request.app.state.gateway.policy_of(principal.tenant)
    if admin:
        record["admin"] = admin
    return record


def _answer_texts(answer: dict[str, Any]) -> list[str] | None:
    """The generated texts a manifest covers, one per choice (None for
    embeddings, which are not content)."""
    choices = answer.get("choices")
    if not isinstance(choices, list):
        return None
    texts = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            texts.append(choice["text"])
        elif isinstance(choice.get("message"), dict):
            content = choice["message"].get("content")
            texts.append(content if isinstance(content, str) else "")
    return texts


def _answer_reasoning(answer: dict[str, Any]) -> list[str | None]:
    """Each chat choice's reasoning trace (``reasoning_content`` or
    ``reasoning``), as the caller receives it."""
    traces: list[str | None] = []
    for choice in answer.get("choices") or []:
        if not isinstance(choice, dict):
            continue  # as in _answer_texts: one entry per choice the manifest covers
        message = choice.get("message")
        message = message if isinstance(message, dict) else {}
        found = [message.get(k) for k in ("reasoning_content", "reasoning")]
        traces.append("".join(t for t in found if isinstance(t, str)) or None)
    return traces


def _answer_tool_calls(answer: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The tool calls of each chat choice, as the caller receives them."""
    calls = []
    for choice in answer.get("choices") or []:
        if not isinstance(choice, dict):
            continue  # as in _answer_texts: one entry per choice the manifest covers
        message = choice.get("message")
        made = message.get("tool_calls") if isinstance(message, dict) else None
        calls.append([c for c in made if isinstance(c, dict)] if isinstance(made, list) else [])
    return calls


def _authorize_any(gateway: Gateway, request: Request, permissions: tuple[str, ...]) -> Principal:
    last: GatewayError | None = None
    for permission in permissions:
        try:
            return gateway.authorize(request, permission)
        except GatewayError as exc:
            if exc.status != 403:
                raise
            last = exc
    assert last is not None
    raise last


def _int_param(request: Request, name: str, default: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            message = f"query parameter {name!r} is required"
            raise GatewayError(400, message, "invalid_request", name)
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise GatewayError(
            400, f"query parameter {name!r} must be a non-negative integer", "invalid_request", name
        )
    return int(raw)


def _b64url_decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
