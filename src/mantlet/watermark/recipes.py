"""The two things callers do: watermark a tenant's generation, and test a
text against a tenant's keys. Keys come from a ``WatermarkKeyRing``; only key
ids and parameters leave."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from mantlet.watermark.detect import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_TOKENS,
    Detection,
    detect_with_keys,
)
from mantlet.watermark.keys import WatermarkKey, WatermarkKeyRing
from mantlet.watermark.scheme import GreenLists, WatermarkLogitsProcessor, WatermarkParams
from mantlet.watermark.tokenizer import Tokenizer

DEFAULT_TENANT = "default"
# The tenant whose key watermarks the generation running in this context; the
# gateway sets it per request (asyncio.to_thread carries it to the worker).
current_tenant: ContextVar[str] = ContextVar("mantlet_watermark_tenant", default=DEFAULT_TENANT)


@contextmanager
def tenant_scope(tenant: str) -> Iterator[None]:
    token = current_tenant.set(tenant)
    try:
        yield
    finally:
        current_tenant.reset(token)


class Watermarker:
    """Hands out the logits processor of a tenant's signing key."""

    def __init__(self, ring: WatermarkKeyRing, params: WatermarkParams) -> None:
        self.ring = ring
        self.params = params
        self._green: dict[str, GreenLists] = {}
        self._lock = threading.Lock()

    def for_tenant(self, tenant: str) -> tuple[WatermarkLogitsProcessor, dict[str, Any]]:
        """The processor and its manifest entry (key id and parameters)."""
        key = self.ring.signing_key(tenant)
        with self._lock:
            green = self._green.get(key.key_id)
            if green is None:
                green = self._green[key.key_id] = GreenLists(key.secret, self.params)
        return WatermarkLogitsProcessor(green), self.params.describe(key.key_id)


class WatermarkDetector:
    """Text in, verdict out, trying every active key of a tenant."""

    def __init__(self, tokenizer: Tokenizer, params: WatermarkParams) -> None:
        self.tokenizer = tokenizer
        self.params = params

    def detect(
        self,
        text: str,
        keys: Sequence[WatermarkKey],
        *,
        windowed: bool = False,
        alpha: float = DEFAULT_ALPHA,
        min_tokens: int = DEFAULT_MIN_TOKENS,
    ) -> Detection:
        ids = self.tokenizer.encode(text)
        green = [(k.key_id, GreenLists(k.secret, self.params)) for k in keys]
        return detect_with_keys(ids, green, windowed=windowed, alpha=alpha, min_tokens=min_tokens)
