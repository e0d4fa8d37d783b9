"""Per-tenant data keys wrapped by a master key, and payload encryption
under them.

Crypto-shredding: erasing a tenant destroys its wrapped data key. Payloads
encrypted under it become unreadable for good, while everything that does
not depend on the key (the audit records and their Merkle tree) still
verifies. Master-key rotation re-wraps data keys; payloads stay as they are.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Engine

from mantlet.core.sql import create_tables
from mantlet.crypto.keyproviders import KeyProvider, KeyProviderError
from mantlet.errors import MantletError

__all__ = ["DecryptionError", "Sealed", "TenantErased", "TenantKeyring"]

_metadata = sa.MetaData()
tenant_keys_table = sa.Table(
    "tenant_keys",
    _metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("master_key_id", sa.String(64), nullable=True),
    sa.Column("wrapped", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("erased_at", sa.String(40), nullable=True),
)
_NONCE = 12


class TenantErased(MantletError):
    """The tenant's data key was destroyed; its payloads cannot be read."""


class DecryptionError(MantletError):
    """A payload did not authenticate under its tenant's key."""


@dataclass(frozen=True, slots=True)
class Sealed:
    nonce: bytes
    ciphertext: bytes


def _aad(tenant: str) -> bytes:
    return b"mantlet-tenant-key:" + tenant.encode("utf-8")


class TenantKeyring:
    def __init__(self, engine: Engine, provider: KeyProvider) -> None:
        self._engine = engine
        self.provider = provider
        create_tables(_metadata, engine)

    def data_key(self, tenant: str, *, create: bool = True) -> bytes:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(tenant_keys_table).where(tenant_keys_table.c.tenant == tenant)
            ).first()
        if row is not None:
            if row.erased_at is not None or row.wrapped is None:
                raise TenantErased(f"tenant {tenant!r} was erased; its data key is destroyed")
            return self.provider.unwrap(row.master_key_id, bytes(row.wrapped), _aad(tenant))
        if not create:
            raise KeyProviderError(f"tenant {tenant!r} has no data key")
        key = secrets.token_bytes(32)
        key_id, wrapped = self.provider.wrap(key, _aad(tenant))
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    tenant_keys_table.insert().values(
                        tenant=tenant,
                        master_key_id=key_id,
                        wrapped=wrapped,
                        created_at=datetime.now(UTC).isoformat(),
                    )
                )
        except sa.exc.IntegrityError:  # created concurrently: use that one
            return self.data_key(tenant, create=False)
        return key

    def seal(self, tenant: str, plaintext: bytes, context: bytes) -> Sealed:
        return self.seal_with(self.data_key(tenant), plaintext, context)

    @staticmethod
    def seal_with(key: bytes, plaintext: bytes, context: bytes) -> Sealed:
        nonce = secrets.token_bytes(_NONCE)
        return Sealed(nonce, AESGCM(key).encrypt(nonce, plaintext, context))

    def open(self, tenant: str, sealed: Sealed, context: bytes) -> bytes:
        key = self.data_key(tenant, create=False)
        try:
            return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, context)
        except InvalidTag:
            raise DecryptionError("payload does not authenticate") from None

    def erase(self, tenant: str) -> bool:
        """Destroys the tenant's data key; True if there was one to destroy.
        The row stays (marked erased) so a new key is never silently made."""
        now = datetime.now(UTC).isoformat()
        table = tenant_keys_table
        with self._engine.begin() as conn:
            live = sa.and_(table.c.tenant == tenant, table.c.erased_at.is_(None))
            erase = table.update().where(live).values(wrapped=None, master_key_id=None)
            done = conn.execute(erase.values(erased_at=now)).rowcount
            known = conn.execute(sa.select(table.c.tenant).where(table.c.tenant == tenant)).first()
            if known is None:
                conn.execute(table.insert().values(tenant=tenant, created_at=now, erased_at=now))
        return bool(done)

    def rewrap_all(self) -> int:
        """Re-wraps every live data key under the provider's current master
        key (after a rotation); payloads are untouched. Returns the count."""
        count = 0
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.select(tenant_keys_table).where(tenant_keys_table.c.erased_at.is_(None))
            ).all()
            for row in rows:
                if row.master_key_id == self.provider.current_key_id:
                    continue
                key = self.provider.unwrap(row.master_key_id, bytes(row.wrapped), _aad(row.tenant))
                key_id, wrapped = self.provider.wrap(key, _aad(row.tenant))
                conn.execute(
                    tenant_keys_table.update()
                    .where(tenant_keys_table.c.tenant == row.tenant)
                    .values(master_key_id=key_id, wrapped=wrapped)
                )
                count += 1
        return count

    def status(self) -> list[dict[str, str | None]]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(tenant_keys_table).order_by(tenant_keys_table.c.tenant))
            return [
                {
                    "tenant": r.tenant,
                    "master_key_id": r.master_key_id,
                    "created_at": r.created_at,
                    "erased_at": r.erased_at,
                }
                for r in rows
            ]
