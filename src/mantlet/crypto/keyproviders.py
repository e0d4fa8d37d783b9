"""Master-key providers: where the key that wraps tenant data keys lives.

One interface, one module per kind; a cloud KMS is one more class with the
same three members. Wrapping is AES-256-GCM with the caller's associated data
(the tenant), so a wrapped key cannot be moved to another tenant's row.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mantlet.errors import MantletError

__all__ = [
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyProvider",
    "KeyProviderError",
    "StaticKeyProvider",
]

_NONCE = 12


class KeyProviderError(MantletError):
    """A master key is missing, malformed, or does not open a wrapped key."""


@runtime_checkable
class KeyProvider(Protocol):
    @property
    def current_key_id(self) -> str: ...

    def wrap(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """Encrypts under the current master key; returns (key id, blob)."""
        ...

    def unwrap(self, key_id: str, blob: bytes, aad: bytes) -> bytes: ...


class StaticKeyProvider:
    """Master keys held in memory: ``{key_id: 32-byte key}``, first is current.
    The file and environment providers are this with a different loader."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise KeyProviderError(f"current master key id {current!r} is not among the keys")
        for key_id, key in keys.items():
            if len(key) != 32:
                raise KeyProviderError(f"master key {key_id!r} is not 32 bytes")
        self._keys = dict(keys)
        self._current = current

    @property
    def current_key_id(self) -> str:
        return self._current

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def wrap(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(_NONCE)
        blob = nonce + AESGCM(self._keys[self._current]).encrypt(nonce, plaintext, aad)
        return self._current, blob

    def unwrap(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        key = self._keys.get(key_id)
        if key is None:
            raise KeyProviderError(f"master key {key_id!r} is not available")
        try:
            return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag:
            raise KeyProviderError(f"master key {key_id!r} does not open this key") from None


def _new_key_id() -> str:
    return "mk" + secrets.token_hex(4)


class FileKeyProvider(StaticKeyProvider):
    """Master keys in a JSON file (mode 0600), created on first use:
    ``{"current": id, "keys": {id: base64}}``. ``rotate`` adds a new current
    key and keeps the old ones so existing wrapped keys can be re-wrapped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            self._write({_new_key_id(): secrets.token_bytes(32)}, create=True)
        keys, current = self._read()
        super().__init__(keys, current)

    def _read(self) -> tuple[dict[str, bytes], str]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in data["keys"].items()}
            return keys, str(data["current"])
        except (OSError, ValueError, KeyError, TypeError, binascii.Error):
            raise KeyProviderError(f"master key file {self.path} is unreadable") from None

    def _write(self, keys: Mapping[str, bytes], *, create: bool = False) -> None:
        current = next(reversed(list(keys)))
        text = json.dumps(
            {"current": current, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}}
        )
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if create and self.path.exists():  # another process created it meanwhile
            tmp.unlink()
            return
        tmp.replace(self.path)

    def rotate(self) -> str:
        """Adds a fresh master key and makes it current; returns its id."""
        keys, _ = self._read()
        new_id = _new_key_id()
        keys[new_id] = secrets.token_bytes(32)
        self._write(keys)
        self._keys, self._current = keys, new_id
        return new_id


class EnvKeyProvider(StaticKeyProvider):
    """Master keys from an environment variable:
    ``MANTLET_MASTER_KEYS="id1:base64key,id0:base64key"``, the first current."""

    VARIABLE = "MANTLET_MASTER_KEYS"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        value = (environ if environ is not None else os.environ).get(self.VARIABLE, "")
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            key_id, sep, encoded = item.partition(":")
            try:
                if not sep or not key_id:
                    raise ValueError
                keys[key_id] = base64.b64decode(encoded, validate=True)
            except (ValueError, binascii.Error):
                raise KeyProviderError(f"{self.VARIABLE} is malformed") from None
        if not keys:
            raise KeyProviderError(f"{self.VARIABLE} is not set")
        super().__init__(keys, next(iter(keys)))
