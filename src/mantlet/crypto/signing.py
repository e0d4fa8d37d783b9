"""The server's Ed25519 signing key: signs audit checkpoints and provenance
manifests. Generated on first start as a 0600 file in the data directory."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

__all__ = ["SigningKey"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.private = key
        self.public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # A stable, public key id: a prefix of the public key's SHA-256.
        self.kid = _b64url(hashlib.sha256(self.public).digest()[:12])

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """Reads a PEM key, creating it (mode 0600, exclusively) if absent."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process won the race; use its key
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(pem)
        loaded = load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(loaded)

    def public_jwk(self) -> dict[str, Any]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(self.public),
            "kid": self.kid,
            "alg": "Ed25519",
            "use": "sig",
        }

    def private_jwk(self) -> dict[str, Any]:
        """For signing in-process only; never serialised anywhere."""
        raw = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {**self.public_jwk(), "d": _b64url(raw)}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}
