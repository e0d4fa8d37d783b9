"""A bounded cache of model results, scoped per caller and keyed so that it
holds no text.

Models whose output depends on their input alone (the injection encoder's
windows, the NER model's texts) skip work they have done recently: a chat
client re-sends the whole conversation every turn. Two rules make that safe
in a multi-tenant gateway:

- a hit is faster than a miss, so entries are scoped (the gateway passes the
  tenant): one tenant cannot time a guess at what another one sent;
- keys are BLAKE2b under a random per-process secret, so a key cannot be
  checked against a guessed text either.

Hand-written rather than ``functools.lru_cache``: that one keys by the value
itself (the text would stay in memory) and knows no scope.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class ScopedCache(Generic[V]):
    def __init__(self, size: int) -> None:
        self.size = size  # 0 turns the cache off
        self.hits = 0
        self._entries: OrderedDict[bytes, V] = OrderedDict()
        self._secret = os.urandom(16)
        self._lock = threading.Lock()

    def key(self, scope: str, payload: bytes) -> bytes:
        scoped = scope.encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(key=self._secret, digest_size=16)
        digest.update(len(scoped).to_bytes(4, "big") + scoped)  # no scope/payload ambiguity
        digest.update(payload)
        return digest.digest()

    def get(self, key: bytes) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return value

    def put(self, key: bytes, value: V) -> None:
        if not self.size:
            return
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def keys(self) -> list[bytes]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
