"""The gateway's accountability state: audit log, signing key, tenant keys,
encrypted payloads and provenance manifests, opened from one data directory
(the CLI opens the same thing to verify, prove, export and erase).

Appends go through a group committer: concurrent requests waiting on the log
share one transaction, so the cost per request falls as load rises while
every request still waits until its record is durable before it is answered.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mantlet.audit import AuditLog, Checkpoint, NoteSigner, NoteVerifier
from mantlet.audit.payloads import PayloadStore
from mantlet.core.canonical import canonical_json
from mantlet.core.sql import create_tables
from mantlet.crypto.keyproviders import EnvKeyProvider, FileKeyProvider, KeyProvider
from mantlet.crypto.signing import SigningKey
from mantlet.crypto.tenant_keys import TenantKeyring
from mantlet.gateway.settings import GatewaySettings
from mantlet.provenance import build_manifest, sign_manifest

__all__ = ["Accountability", "AuditUnavailable", "body_digest"]

_metadata = sa.MetaData()
provenance_table = sa.Table(
    "provenance_manifests",
    _metadata,
    sa.Column("request_id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=True, index=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("jws", sa.Text, nullable=False),
)

# Built once: a statement made per call costs more than the insert itself.
_INSERT_MANIFEST = provenance_table.insert()
Extra = Callable[[Connection, int], None]


class AuditUnavailable(RuntimeError):
    """The record could not be written; the gateway fails closed (503)."""


def body_digest(data: bytes | Mapping[str, Any] | None) -> str | None:
    """SHA-256 of a raw body, or of the canonical JSON of a parsed one."""
    if data is None:
        return None
    raw = data if isinstance(data, bytes) else canonical_json(dict(data))
    return hashlib.sha256(raw).hexdigest()


@dataclass
class _Pending:
    record: dict[str, Any]
    extra: Extra | None
    future: asyncio.Future[int]


@dataclass
class Accountability:
    log: AuditLog
    signing_key: SigningKey
    keyring: TenantKeyring
    payloads: PayloadStore
    store_payloads: bool = False
    provenance: bool = True
    _pending: list[_Pending] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, settings: GatewaySettings, *, background_wal: bool = False) -> Accountability:
        """``background_wal``: the caller (a running gateway) checkpoints the
        SQLite write-ahead log itself; see ``AuditLog``."""
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = AuditLog(
            settings.resolved_database_url,
            origin=settings.audit.origin,
            background_wal=background_wal,
        )
        provider: KeyProvider = (
            EnvKeyProvider()
            if settings.audit.master_keys == "env"
            else FileKeyProvider(data_dir / "master.keys")
        )
        keyring = TenantKeyring(log.engine, provider)
        create_tables(_metadata, log.engine)
        return cls(
            log=log,
            signing_key=SigningKey.load_or_create(data_dir / "signing.key"),
            keyring=keyring,
            payloads=PayloadStore(log.engine, keyring),
            store_payloads=settings.audit.store_payloads,
            provenance=settings.audit.provenance,
        )

    def close(self) -> None:
        self.log.close()

    @property
    def signer(self) -> NoteSigner:
        return NoteSigner(self.log.origin, self.signing_key.private)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.signer.verifier_key)

    def publish_checkpoint(self) -> Checkpoint:
        return self.log.publish_checkpoint(self.signer)

    # -- appending -------------------------------------------------------

    async def append(
        self, record: dict[str, Any], extra: Extra | None = None, *, inline: bool = False
    ) -> int:
        """Appends and waits until the record is committed; raises
        AuditUnavailable if it could not be. ``inline``: the caller is the
        only request open, so with no batch forming the write runs on the
        event loop, sparing two thread hops that nobody else could use.
        Only on SQLite, a local file: a network database that stalls would
        stall the loop with it (health checks included), so its writes
        always go through the committer's thread."""
        idle = not self._pending and (self._flusher is None or self._flusher.done())
        if inline and idle and self.log.engine.dialect.name == "sqlite":
            try:
                return self._write([(record, extra)])[0]
            except Exception as exc:  # noqa: BLE001 - fail closed, as the batched path does
                raise AuditUnavailable(type(exc).__name__) from None
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(record, extra, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                items = [(item.record, item.extra) for item in batch]
                seqs = await asyncio.to_thread(self._write, items)
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(AuditUnavailable(type(exc).__name__))
                continue
            for item, seq in zip(batch, seqs, strict=True):
                if not item.future.done():
                    item.future.set_result(seq)

    def _write(self, items: list[tuple[dict[str, Any], Extra | None]]) -> list[int]:
        def extras(conn: Connection, seqs: list[int]) -> None:
            for (_, extra), seq in zip(items, seqs, strict=True):
                if extra is not None:
                    extra(conn, seq)

        return self.log.append_many([record for record, _ in items], after=extras)

    def append_sync(self, record: dict[str, Any]) -> int:
        """For the CLI's admin actions (no event loop)."""
        return self.log.append(record)

    # -- what travels with a record ------------------------------------

    def payload_writer(self, tenant: str, payload: Mapping[str, Any]) -> Extra | None:
        if not self.store_payloads:
            return None
        data = canonical_json(dict(payload))
        key = self.keyring.data_key(tenant)  # raises TenantErased: nothing is stored
        return lambda conn, seq: self.payloads.write(conn, seq, tenant, data, key)

    def manifest_writer(
        self,
        holder: dict[str, str],
        *,
        tenant: str | None,
        texts: list[str],
        model: str,
        upstream: str | None,
        request_id: str,
        watermark: Mapping[str, Any] | None = None,
        tool_calls: list[list[dict[str, Any]]] | None = None,
        reasoning: list[str | None] | None = None,
    ) -> Extra:
        """Builds and signs the manifest once the record's index is known,
        and stores it in the same transaction; the token lands in ``holder``."""

        def write(conn: Connection, seq: int) -> None:
            manifest = build_manifest(
                texts=texts,
                model=model,
                upstream=upstream,
                request_id=request_id,
                audit_log=self.log.origin,
                audit_index=seq,
                watermark=watermark,
                tool_calls=tool_calls,
                reasoning=reasoning,
            )
            token = sign_manifest(manifest, self.signing_key)
            row = {"request_id": request_id, "tenant": tenant, "seq": seq, "jws": token}
            conn.execute(_INSERT_MANIFEST, row)
            holder["jws"] = token

        return write

    def manifest(self, request_id: str) -> tuple[str | None, str] | None:
        """(tenant, compact JWS) of a stored manifest."""
        with self.log.engine.connect() as conn:
            row = conn.execute(
                sa.select(provenance_table.c.tenant, provenance_table.c.jws).where(
                    provenance_table.c.request_id == request_id
                )
            ).first()
        return (row.tenant, row.jws) if row else None


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
