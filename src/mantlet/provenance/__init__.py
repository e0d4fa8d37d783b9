"""Signed provenance manifests: machine-readable marking of AI output."""

from mantlet.provenance.manifest import (
    ManifestError,
    VerifiedManifest,
    build_manifest,
    content_sha256,
    sign_manifest,
    tool_calls_sha256,
    verify_manifest,
)

__all__ = [
    "ManifestError",
    "VerifiedManifest",
    "build_manifest",
    "content_sha256",
    "sign_manifest",
    "tool_calls_sha256",
    "verify_manifest",
]
