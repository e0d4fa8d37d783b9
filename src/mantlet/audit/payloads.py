"""Prompt and response payloads kept beside the audit log, encrypted under
the tenant's data key, and only when the settings ask for it. The payload is
not part of the Merkle leaf (the leaf holds its SHA-256), so crypto-shredding
a tenant leaves the log verifiable."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mantlet.core.sql import create_tables
from mantlet.crypto.tenant_keys import Sealed, TenantKeyring

__all__ = ["PayloadStore"]

_metadata = sa.MetaData()
payloads_table = sa.Table(
    "audit_payloads",
    _metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("tenant", sa.String(200), nullable=False, index=True),
    sa.Column("nonce", sa.LargeBinary(12), nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
)


def _context(tenant: str, seq: int) -> bytes:
    return f"mantlet-payload:{tenant}:{seq}".encode()


_INSERT = payloads_table.insert()  # built once: it is on every request's path


class PayloadStore:
    def __init__(self, engine: Engine, keyring: TenantKeyring) -> None:
        self._engine = engine
        self.keyring = keyring
        create_tables(_metadata, engine)

    def write(self, conn: Connection, seq: int, tenant: str, payload: bytes, key: bytes) -> None:
        """Inside the audit append's transaction, so record and payload land
        together. ``key`` is the tenant's data key, fetched (or created) by
        the caller before the transaction: creating it inside would wait on
        the write lock this transaction holds."""
        sealed = TenantKeyring.seal_with(key, payload, _context(tenant, seq))
        row = {"seq": seq, "tenant": tenant, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext}
        conn.execute(_INSERT, row)

    def read(self, seq: int) -> tuple[str, bytes] | None:
        """(tenant, plaintext); raises TenantErased after crypto-shredding."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(payloads_table).where(payloads_table.c.seq == seq)).first()
        if row is None:
            return None
        sealed = Sealed(bytes(row.nonce), bytes(row.ciphertext))
        return row.tenant, self.keyring.open(row.tenant, sealed, _context(row.tenant, seq))
