"""Statistical watermarking of locally generated text (KGW with a keyed
HMAC-SHA256 PRF) and its detection from text alone.

A layer below the gateway: the local-model provider asks a ``Watermarker``
for a llama.cpp logits processor; ``mantlet watermark detect`` and
``POST /v1/watermark/detect`` use a ``WatermarkDetector``. Raw PRF code lives
in the private ``_prf`` module.
"""

from mantlet.watermark.detect import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_TOKENS,
    Detection,
    detect_ids,
    detect_windows,
    detect_with_keys,
)
from mantlet.watermark.keys import WatermarkKey, WatermarkKeyRing
from mantlet.watermark.recipes import (
    WatermarkDetector,
    Watermarker,
    current_tenant,
    tenant_scope,
)
from mantlet.watermark.scheme import (
    SCHEME,
    GreenLists,
    WatermarkLogitsProcessor,
    WatermarkParams,
)
from mantlet.watermark.tokenizer import GGUFTokenizer, Tokenizer

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MIN_TOKENS",
    "SCHEME",
    "Detection",
    "GGUFTokenizer",
    "GreenLists",
    "Tokenizer",
    "WatermarkDetector",
    "WatermarkKey",
    "WatermarkKeyRing",
    "WatermarkLogitsProcessor",
    "WatermarkParams",
    "Watermarker",
    "current_tenant",
    "detect_ids",
    "detect_windows",
    "detect_with_keys",
    "tenant_scope",
]
