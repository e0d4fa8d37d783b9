"""``POST /v1/watermark/detect``: is this text watermarked by one of our keys?

For auditors and admins. The caller's tenant's active keys are tried (an
admin may name another tenant); the text is re-tokenized with the vocabulary
of the local model that generated it. The answer holds the statistic and the
matching key id, never key material and never the text.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from mantlet.errors import MantletError
from mantlet.gateway.bodies import read_json
from mantlet.gateway.errors import GatewayError
from mantlet.watermark import (
    DEFAULT_MIN_TOKENS,
    GGUFTokenizer,
    Tokenizer,
    WatermarkDetector,
    WatermarkKeyRing,
    WatermarkParams,
)


def local_model_paths(settings: Any) -> dict[str, Path]:
    """Public model name -> GGUF file, for routes served by a local upstream."""
    from mantlet.gateway.providers.local_gguf import packaged_smollm2

    local = {u.name: u for u in settings.upstreams if u.kind == "local"}
    paths: dict[str, Path] = {}
    for route in settings.routes:
        for name in route.upstreams:
            if name in local:
                path = local[name].model_path or packaged_smollm2()
                if path is not None:
                    paths.setdefault(route.model, Path(path))
    return paths


def watermark_router(gateway: Any) -> APIRouter:
    settings = gateway.settings
    config = settings.watermark
    ring = WatermarkKeyRing(config.keys_file or settings.data_dir / "watermark-keys.json")
    params = WatermarkParams(gamma=config.gamma, delta=config.delta, context=config.context)
    tokenizers: dict[Path, Tokenizer] = {}
    lock = threading.Lock()

    def tokenizer_for(path: Path) -> Tokenizer:
        with lock:
            if path not in tokenizers:
                tokenizers[path] = GGUFTokenizer(path)
            return tokenizers[path]

    router = APIRouter()

    @router.post("/v1/watermark/detect")
    async def detect(request: Request) -> dict[str, Any]:
        principal = gateway.authorize(request, "watermark:detect")
        body = await read_json(request, settings.max_body_bytes)
        text, windowed = body.get("text"), body.get("windowed", False)
        tenant, model = body.get("tenant", principal.tenant), body.get("model")
        min_tokens = body.get("min_tokens", DEFAULT_MIN_TOKENS)
        if not isinstance(text, str) or not text:
            raise GatewayError(400, "'text' must be a non-empty string", "invalid_request", "text")
        if not isinstance(windowed, bool):
            raise GatewayError(400, "'windowed' must be a boolean", "invalid_request", "windowed")
        if not isinstance(min_tokens, int) or isinstance(min_tokens, bool) or min_tokens < 8:
            raise GatewayError(
                400, "'min_tokens' must be an integer >= 8", "invalid_request", "min_tokens"
            )
        if tenant != principal.tenant and not gateway.authorizes(principal, "keys:manage"):
            raise GatewayError(403, "only an admin may check another tenant", "permission_denied")
        if not isinstance(tenant, str):
            raise GatewayError(400, "'tenant' must be a string", "invalid_request", "tenant")
        paths = local_model_paths(settings)
        if model is None and paths:
            model = next(iter(paths))
        if model not in paths:
            raise GatewayError(
                404, f"model {model!r} is not a local model", "model_not_found", "model"
            )
        keys = ring.active(tenant)
        if not keys:
            raise GatewayError(404, "this tenant has no watermark keys", "no_watermark_keys")

        def run() -> dict[str, Any]:
            detector = WatermarkDetector(tokenizer_for(paths[model]), params)
            found = detector.detect(text, keys, windowed=windowed, min_tokens=min_tokens)
            return {"object": "watermark.detection", "model": model, **found.to_dict()}

        try:
            return await asyncio.to_thread(run)
        except MantletError as exc:
            raise GatewayError(503, exc.diagnostics(), "watermark_unavailable") from None

    return router
