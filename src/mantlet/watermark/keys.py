"""Per-tenant watermark keys, kept in one JSON file with mode 0600.

Each tenant has one or more keys; the newest active one watermarks new text,
and detection tries every active key of the tenant so that text generated
before a rotation stays detectable. Keys are 256-bit random secrets; only
their ids ever leave this module (``repr`` hides the secret).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mantlet.errors import ConfigError

KEY_FILE = "watermark-keys.json"


@dataclass(frozen=True)
class WatermarkKey:
    key_id: str
    tenant: str
    secret: bytes = field(repr=False)
    created: str
    active: bool = True

    def info(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "created": self.created,
            "active": self.active,
        }


class WatermarkKeyRing:
    """The key file of one gateway data dir; created on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> WatermarkKeyRing:
        return cls(data_dir / KEY_FILE)

    def _read(self) -> list[WatermarkKey]:
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            return [
                WatermarkKey(
                    key_id=str(k["key_id"]),
                    tenant=str(k["tenant"]),
                    secret=bytes.fromhex(k["secret"]),
                    created=str(k["created"]),
                    active=bool(k.get("active", True)),
                )
                for k in raw["keys"]
            ]
        except (OSError, ValueError, KeyError, TypeError):
            # Never echo the file: it holds secrets.
            raise ConfigError(
                f"watermark key file {self.path} is unreadable or malformed"
            ) from None

    def _write(self, keys: list[WatermarkKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = {
            "version": 1,
            "keys": [{**k.info(), "secret": k.secret.hex()} for k in keys],
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def keys(self, tenant: str | None = None) -> list[WatermarkKey]:
        with self._lock:
            return [k for k in self._read() if tenant is None or k.tenant == tenant]

    def active(self, tenant: str) -> list[WatermarkKey]:
        """Active keys of ``tenant``, newest first."""
        return [k for k in reversed(self.keys(tenant)) if k.active]

    def signing_key(self, tenant: str) -> WatermarkKey:
        """The key that watermarks new text for ``tenant`` (created if none)."""
        with self._lock:
            keys = self._read()
            mine = [k for k in keys if k.tenant == tenant and k.active]
            if mine:
                return mine[-1]
            key = _new_key(tenant)
            self._write([*keys, key])
            return key

    def rotate(self, tenant: str) -> WatermarkKey:
        """A new signing key; older keys stay active for detection."""
        with self._lock:
            keys = self._read()
            key = _new_key(tenant)
            self._write([*keys, key])
            return key

    def retire(self, key_id: str) -> bool:
        """Stop detecting with ``key_id`` (and stop signing with it)."""
        with self._lock:
            keys = self._read()
            found = any(k.key_id == key_id for k in keys)
            self._write(
                [
                    WatermarkKey(k.key_id, k.tenant, k.secret, k.created, False)
                    if k.key_id == key_id
                    else k
                    for k in keys
                ]
            )
            return found


def _new_key(tenant: str) -> WatermarkKey:
    return WatermarkKey(
        key_id="wk-" + secrets.token_hex(6),
        tenant=tenant,
        secret=secrets.token_bytes(32),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
