"""Signed checkpoints in the C2SP formats (``tlog-checkpoint`` inside a
``signed-note``) with Ed25519, so standard transparency-log tooling and
witnesses can check them.

Hand-written: the formats are a few lines of text and no maintained Python
library implements them; the signature itself is ``cryptography``'s Ed25519.

A note is its text (ending in a newline), a blank line, then signature lines
``— <key name> <base64(4-byte key hash || signature)>``. The key hash is the
first four bytes of SHA-256(name || "\\n" || 0x01 || public key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["Checkpoint", "CheckpointError", "NoteSigner", "NoteVerifier"]

_ED25519 = b"\x01"
_DASH = "\u2014 "


class CheckpointError(ValueError):
    """A note or checkpoint is malformed or its signature does not verify."""


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise CheckpointError("a key name must be non-empty, without spaces or '+'")


class NoteSigner:
    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = key
        self.public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def verifier_key(self) -> str:
        """``<name>+<hex key hash>+<base64(0x01 || public key)>``, the string
        a verifier is configured with."""
        encoded = base64.b64encode(_ED25519 + self.public).decode()
        return f"{self.name}+{_key_hash(self.name, self.public).hex()}+{encoded}"

    def sign(self, text: str) -> str:
        if not text.endswith("\n"):
            raise CheckpointError("note text must end with a newline")
        signature = self._key.sign(text.encode("utf-8"))
        blob = base64.b64encode(_key_hash(self.name, self.public) + signature).decode()
        return f"{text}\n{_DASH}{self.name} {blob}\n"


class NoteVerifier:
    def __init__(self, verifier_key: str) -> None:
        try:
            name, hash_hex, encoded = verifier_key.strip().split("+", 2)
            raw = base64.b64decode(encoded, validate=True)
            key_hash = bytes.fromhex(hash_hex)
        except (ValueError, binascii.Error):
            raise CheckpointError("malformed verifier key") from None
        if len(raw) != 33 or raw[:1] != _ED25519:
            raise CheckpointError("verifier key is not an Ed25519 key")
        if key_hash != _key_hash(name, raw[1:]):
            raise CheckpointError("verifier key hash does not match its name and key")
        self.name = name
        self._hash = key_hash
        self._key = Ed25519PublicKey.from_public_bytes(raw[1:])

    def verify(self, note: str) -> str:
        """Returns the note text if this key signed it, else raises."""
        text, sep, signatures = note.rpartition("\n\n")
        if not sep or not signatures.endswith("\n"):
            raise CheckpointError("note has no signature block")
        text += "\n"
        for line in signatures[:-1].split("\n"):
            if not line.startswith(_DASH):
                raise CheckpointError("malformed signature line")
            name, _, blob = line[len(_DASH) :].partition(" ")
            if name != self.name:
                continue
            try:
                raw = base64.b64decode(blob, validate=True)
            except binascii.Error:
                raise CheckpointError("signature is not base64") from None
            if raw[:4] != self._hash:
                continue
            try:
                self._key.verify(raw[4:], text.encode("utf-8"))
            except InvalidSignature:
                raise CheckpointError(f"signature by {self.name} does not verify") from None
            return text
        raise CheckpointError(f"note is not signed by {self.name}")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str | None = None

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    def with_note(self, note: str) -> Checkpoint:
        return replace(self, note=note)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError("checkpoint needs origin, size and root lines")
        origin, size, root = lines[0], lines[1], lines[2]
        if not origin or not size.isdigit() or (size != "0" and size.startswith("0")):
            raise CheckpointError("malformed checkpoint origin or size")
        try:
            digest = base64.b64decode(root, validate=True)
        except binascii.Error:
            raise CheckpointError("checkpoint root is not base64") from None
        if len(digest) != 32:
            raise CheckpointError("checkpoint root is not a SHA-256 hash")
        return cls(origin, int(size), digest)

    @classmethod
    def open(cls, note: str, verifier: NoteVerifier) -> Checkpoint:
        """Verifies a signed checkpoint note and parses it."""
        return cls.parse(verifier.verify(note)).with_note(note)
