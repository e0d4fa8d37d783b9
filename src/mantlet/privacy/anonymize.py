"""Irreversible anonymization for data at rest: no vault, nothing to restore.

``mask`` hides the value; ``hash`` gives a keyed token (HMAC-SHA-256 with a
tenant key: the same value always gives the same token, so joins and counts
still work, and without the key tokens cannot be reversed by guessing values);
``format`` keeps the shape (digits stay digits, separators stay) with keyed
random content.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from enum import StrEnum

from mantlet.core.types import Finding
from mantlet.errors import ConfigError
from mantlet.privacy.surrogates import fake_value

Transform = Callable[[str, str], str]  # (kind, value) -> replacement


class Method(StrEnum):
    MASK = "mask"
    HASH = "hash"
    FORMAT = "format"


def mask(kind: str, value: str) -> str:
    return "*" * len(value)


def hmac_token(key: bytes) -> Transform:
    if len(key) < 16:
        raise ConfigError("an anonymization key needs at least 16 bytes")

    def token(kind: str, value: str) -> str:
        digest = hmac.new(key, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()
        return f"<{kind}:{digest[:16]}>"

    return token


def format_preserving(key: bytes) -> Transform:
    if len(key) < 16:
        raise ConfigError("an anonymization key needs at least 16 bytes")

    def replace(kind: str, value: str) -> str:
        return fake_value(kind, value, key, 0)

    return replace


def transform_for(method: Method, key: bytes | None = None) -> Transform:
    if method is Method.MASK:
        return mask
    if key is None:
        raise ConfigError(f"anonymization method {method.value!r} needs a tenant key")
    return hmac_token(key) if method is Method.HASH else format_preserving(key)


def apply(text: str, findings: list[Finding], transform: Transform) -> str:
    """Rewrite non-overlapping findings (as ``strongest_per_region`` returns them)."""
    pieces: list[str] = []
    cursor = 0
    for finding in sorted(findings, key=lambda f: f.start):
        if finding.start < cursor:
            continue
        pieces.append(text[cursor : finding.start])
        pieces.append(transform(finding.kind, text[finding.start : finding.end]))
        cursor = finding.end
    pieces.append(text[cursor:])
    return "".join(pieces)
