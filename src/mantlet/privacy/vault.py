"""The pseudonym vault: per conversation, each real value and its surrogate,
encrypted with AES-256-GCM and kept for a time-to-live.

Rows are found by HMAC digests of the conversation id and of the value, so the
database holds no plaintext: without the key it reveals how many values a
conversation has and when they expire, nothing else. SQLite (a file, or
``:memory:``) is the default store; any process holding the key can read it.
Several processes (gateway workers) may share one file: allocating a new
surrogate runs in one ``BEGIN IMMEDIATE`` transaction (:meth:`Vault.allocating`),
so two workers can never hand the same surrogate to two values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mantlet.errors import ConfigError, MantletError

KEY_BYTES = 32
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pseudonyms (
    conversation TEXT NOT NULL,
    value_mac TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (conversation, value_mac)
)
"""


class VaultError(MantletError):
    """The vault cannot be read with this key (wrong key or tampered rows)."""


def generate_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def load_or_create_key(path: Path) -> bytes:
    """A 32-byte key file, created with mode 0600 on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(generate_key().hex())
    key = bytes.fromhex(path.read_text("ascii").strip())
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{path}: a vault key is {KEY_BYTES} bytes (64 hex characters)")
    return key


class Vault:
    """Thread-safe; one instance per process is enough (conversations are rows)."""

    def __init__(
        self,
        key: bytes,
        path: str | Path = ":memory:",
        *,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"a vault key is {KEY_BYTES} bytes, got {len(key)}")
        if ttl_s <= 0:
            raise ConfigError("vault ttl_s must be positive")
        self._aead = AESGCM(hashlib.sha256(b"mantlet-vault-enc" + key).digest())
        self._mac_key = hashlib.sha256(b"mantlet-vault-mac" + key).digest()
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.RLock()  # re-entered inside allocating()
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    @contextmanager
    def allocating(self) -> Iterator[None]:
        """One write transaction, exclusive across threads and processes:
        look up, count and insert inside it and no other writer interleaves."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _mac(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode("utf-8")
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()

    def _seal(self, conversation: str, value: str, surrogate: str) -> bytes:
        nonce = secrets.token_bytes(12)
        plain = json.dumps([value, surrogate]).encode("utf-8")
        return nonce + self._aead.encrypt(nonce, plain, conversation.encode("ascii"))

    def _open(self, conversation: str, payload: bytes) -> tuple[str, str]:
        try:
            plain = self._aead.decrypt(payload[:12], payload[12:], conversation.encode("ascii"))
        except InvalidTag:
            raise VaultError("vault entry cannot be decrypted with this key") from None
        value, surrogate = json.loads(plain)
        return str(value), str(surrogate)

    def surrogate_for(self, conversation: str, kind: str, value: str) -> str | None:
        conv = self._mac("conversation", conversation)
        with self._lock:
            row = self._db.execute(
                "SELECT payload FROM pseudonyms WHERE conversation=? AND value_mac=? AND expires>?",
                (conv, self._mac("value", kind, value), self._clock()),
            ).fetchone()
        return self._open(conv, row[0])[1] if row else None

    def put(self, conversation: str, kind: str, value: str, surrogate: str) -> None:
        conv = self._mac("conversation", conversation)
        expires = self._clock() + self._ttl
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO pseudonyms VALUES (?, ?, ?, ?, ?)",
                (
                    conv,
                    self._mac("value", kind, value),
                    kind,
                    self._seal(conv, value, surrogate),
                    expires,
                ),
            )
            # Every write refreshes the conversation's TTL: it is alive while used.
            self._db.execute(
                "UPDATE pseudonyms SET expires=? WHERE conversation=?", (expires, conv)
            )

    def mapping(self, conversation: str) -> dict[str, str]:
        """``{surrogate: real value}`` for a live conversation."""
        conv = self._mac("conversation", conversation)
        with self._lock:
            rows = self._db.execute(
                "SELECT payload FROM pseudonyms WHERE conversation=? AND expires>?",
                (conv, self._clock()),
            ).fetchall()
        out = {}
        for (payload,) in rows:
            value, surrogate = self._open(conv, payload)
            out[surrogate] = value
        return out

    def count(self, conversation: str, kind: str) -> int:
        conv = self._mac("conversation", conversation)
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM pseudonyms WHERE conversation=? AND kind=? AND expires>?",
                (conv, kind, self._clock()),
            ).fetchone()
        return int(row[0])

    def purge_expired(self) -> int:
        with self._lock:
            cursor = self._db.execute("DELETE FROM pseudonyms WHERE expires<=?", (self._clock(),))
        return cursor.rowcount
