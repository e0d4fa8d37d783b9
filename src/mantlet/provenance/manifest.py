"""Provenance manifests for generated answers, signed as compact JWS.

The payload is RFC 8785 canonical JSON, so any verifier re-serialising the
manifest gets the same bytes. The signature algorithm is Ed25519 (the
fully-specified name RFC 9864 gives EdDSA over Ed25519; the older ``EdDSA``
name is accepted when verifying). The content hash is over the NFC form of
the text, so a client's Unicode normalisation does not break verification
while any change of visible text does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from mantlet import __version__
from mantlet.core.canonical import canonical_json
from mantlet.crypto.signing import SigningKey

__all__ = [
    "MANIFEST_TYPE",
    "ManifestError",
    "VerifiedManifest",
    "build_manifest",
    "content_sha256",
    "sign_manifest",
    "tool_calls_sha256",
    "verify_manifest",
]

MANIFEST_TYPE = "mantlet-provenance+jws"
SPEC = "https://mantlet.dev/provenance/v1"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_ALGORITHMS = ["Ed25519", "EdDSA"]


class ManifestError(ValueError):
    """Why a manifest did not verify; the message is the reason shown."""


def content_sha256(text: str) -> str:
    return hashlib.sha256(unicodedata.normalize("NFC", text).encode("utf-8")).hexdigest()


def tool_calls_sha256(calls: Sequence[Mapping[str, Any]]) -> str:
    """Hash of one choice's tool calls as the caller received them: each
    call's name and arguments string, in order, as RFC 8785 JSON. Calls in
    the chat shape (``function: {name, arguments}``) and in the Responses
    shape (``name``, ``arguments``) hash alike."""
    named = []
    for call in calls:
        function = call.get("function")
        source = function if isinstance(function, Mapping) else call
        named.append({"name": source.get("name", ""), "arguments": source.get("arguments", "")})
    return hashlib.sha256(canonical_json(named)).hexdigest()


def build_manifest(
    *,
    texts: Sequence[str],
    model: str,
    upstream: str | None,
    request_id: str,
    audit_log: str | None,
    audit_index: int | None,
    watermark: Mapping[str, Any] | None = None,
    created: datetime | None = None,
    tool_calls: Sequence[Sequence[Mapping[str, Any]]] | None = None,
    reasoning: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The manifest of one answer; ``texts`` are its choices in order, and
    ``tool_calls`` the calls each choice made. An agent acts on the calls,
    not the text, so they are covered too (``tool_calls_sha256``, one entry
    per choice, null for a choice without calls; absent when none made any).
    ``reasoning`` is each choice's reasoning trace, generated text shown to
    people too (``reasoning_sha256``, alike)."""
    hashes = [content_sha256(t) for t in texts]
    manifest = {
        "spec": SPEC,
        "content": {
            "sha256": hashes[0] if hashes else content_sha256(""),
            "normalization": "NFC",
            "media_type": "text/plain; charset=utf-8",
        },
        "choices_sha256": hashes,
        "ai_generated": True,
        "digital_source_type": DIGITAL_SOURCE_TYPE,
        "generator": {
            "name": "mantlet-gateway",
            "version": __version__,
            "model": model,
            "upstream": upstream,
        },
        "created": (created or datetime.now(UTC)).isoformat(timespec="seconds"),
        "request_id": request_id,
        "audit": {"log": audit_log, "index": audit_index},
        "watermark": dict(watermark) if watermark else None,
    }
    if tool_calls and any(tool_calls):
        manifest["tool_calls_sha256"] = [
            tool_calls_sha256(calls) if calls else None for calls in tool_calls
        ]
    if reasoning and any(reasoning):
        manifest["reasoning_sha256"] = [
            content_sha256(trace) if trace else None for trace in reasoning
        ]
    return manifest


@functools.lru_cache(maxsize=8)
def _private_jwk(key: SigningKey) -> OKPKey:
    """Imported once per key: signing runs on every answer."""
    return OKPKey.import_key(key.private_jwk())


def sign_manifest(manifest: Mapping[str, Any], key: SigningKey) -> str:
    jwk = _private_jwk(key)
    header = {"alg": "Ed25519", "kid": key.kid, "typ": MANIFEST_TYPE}
    return jws.serialize_compact(
        header, canonical_json(dict(manifest)), jwk, algorithms=["Ed25519"]
    )


@dataclass(frozen=True, slots=True)
class VerifiedManifest:
    manifest: dict[str, Any]
    kid: str
    choice: int


def _keys_by_kid(jwks: Mapping[str, Any]) -> dict[str, OKPKey]:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise ManifestError("key set has no 'keys' list")
    out: dict[str, OKPKey] = {}
    for entry in keys:
        if isinstance(entry, dict) and entry.get("kty") == "OKP" and "kid" in entry:
            public = {k: entry[k] for k in ("kty", "crv", "x") if k in entry}
            try:
                out[str(entry["kid"])] = OKPKey.import_key(public)
            except (JoseError, ValueError):
                raise ManifestError(f"key {entry['kid']!r} in the key set is malformed") from None
    return out


def _still_matching(
    manifest: Mapping[str, Any],
    field: str,
    digest: str,
    matching: list[int],
    uncovered: str,
    differs: str,
) -> list[int]:
    """The choices in ``matching`` whose ``field`` entry is ``digest``."""
    hashes = manifest.get(field)
    if not isinstance(hashes, list):
        raise ManifestError(uncovered)
    kept = [i for i in matching if i < len(hashes) and hashes[i] == digest]
    if not kept:
        raise ManifestError(differs)
    return kept


def verify_manifest(
    token: str,
    text: str,
    jwks: Mapping[str, Any],
    *,
    choice: int | None = None,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    reasoning: str | None = None,
) -> VerifiedManifest:
    """Checks signature, structure and content hash (and, when given, the
    choice's tool calls and reasoning trace); raises ManifestError naming the first thing that
    failed. ``choice`` None accepts any choice the text matches."""
    token = token.strip()
    parts = token.split(".")
    if len(parts) != 3:
        raise ManifestError("manifest is not a compact JWS (three dot-separated parts)")
    try:
        header = jws.extract_compact(token.encode()).protected
    except (JoseError, ValueError):
        raise ManifestError("manifest header is malformed") from None
    if header.get("typ") != MANIFEST_TYPE:
        raise ManifestError(f"manifest type is {header.get('typ')!r}, not {MANIFEST_TYPE!r}")
    if header.get("alg") not in _ALGORITHMS:
        raise ManifestError(f"signature algorithm {header.get('alg')!r} is not accepted")
    kid = str(header.get("kid", ""))
    key = _keys_by_kid(jwks).get(kid)
    if key is None:
        raise ManifestError(f"signing key {kid!r} is not in the trusted key set")
    try:
        payload = jws.deserialize_compact(token, key, algorithms=_ALGORITHMS).payload
    except JoseError:
        raise ManifestError("signature does not verify: the manifest was altered") from None
    try:
        manifest = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ManifestError("manifest payload is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("spec") != SPEC:
        raise ManifestError("manifest payload is not a Mantlet provenance manifest")
    if canonical_json(manifest) != payload:
        raise ManifestError("manifest payload is not canonical JSON (RFC 8785)")
    hashes = manifest.get("choices_sha256")
    if not isinstance(hashes, list) or not hashes:
        hashes = [manifest.get("content", {}).get("sha256")]
    digest = content_sha256(text)
    if choice is not None:
        if not 0 <= choice < len(hashes):
            raise ManifestError(f"manifest has no choice {choice}")
        if hashes[choice] != digest:
            raise ManifestError(f"text does not match choice {choice}: content hash differs")
        matching = [choice]
    else:
        matching = [i for i, h in enumerate(hashes) if h == digest]
        if not matching:
            raise ManifestError("text does not match the manifest: content hash differs")
    if tool_calls is not None:
        matching = _still_matching(
            manifest, "tool_calls_sha256", tool_calls_sha256(tool_calls), matching,
            "manifest covers no tool calls",
            "tool calls do not match the manifest: their hash differs",
        )  # fmt: skip
    if reasoning is not None:
        matching = _still_matching(
            manifest, "reasoning_sha256", content_sha256(reasoning), matching,
            "manifest covers no reasoning trace",
            "reasoning trace does not match the manifest: its hash differs",
        )  # fmt: skip
    return VerifiedManifest(manifest, kid, matching[0])
