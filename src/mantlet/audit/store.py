"""The append-only audit log on SQLAlchemy Core: SQLite (WAL) by default,
PostgreSQL when configured, one code path for both.

Each append runs in one transaction that locks the log head first (``BEGIN
IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on PostgreSQL), so several
gateway processes on one database extend a single gap-free sequence; the
sequence number is the primary key, so a fork would be a constraint violation,
never a silent second record. The record, its leaf, the perfect subtree nodes
it completes and the new head commit together or not at all, which is what
keeps a kill -9 from leaving a half-written record or an inconsistent tree.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from mantlet.audit import merkle
from mantlet.audit.checkpoint import Checkpoint, NoteSigner
from mantlet.core.canonical import canonical_json as _canonical
from mantlet.core.sql import create_tables

__all__ = ["AuditLog", "LogHead", "StoredRecord", "canonical_json"]

T = TypeVar("T")

_metadata = sa.MetaData()

records_table = sa.Table(
    "audit_records",
    _metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("tenant", sa.String(200), nullable=True, index=True),
    sa.Column("request_id", sa.String(80), nullable=True, index=True),
    sa.Column("body", sa.Text, nullable=False),
)
nodes_table = sa.Table(
    "audit_nodes",
    _metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)
head_table = sa.Table(
    "audit_head",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    # The right edge of the tree and the last leaf, so an append reads one
    # row instead of a node per set bit of the size.
    sa.Column("frontier", sa.LargeBinary, nullable=False),
    sa.Column("last_leaf", sa.LargeBinary(32), nullable=False),
)
checkpoints_table = sa.Table(
    "audit_checkpoints",
    _metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON: the exact bytes a leaf hashes."""
    return _canonical(dict(value))


@dataclass(frozen=True, slots=True)
class StoredRecord:
    seq: int
    tenant: str | None
    body: str

    @property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.body.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class LogHead:
    size: int
    root: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "root": base64.b64encode(self.root).decode()}


class AuditLog:
    """Append records, read them back, prove things about them."""

    def __init__(
        self, url: str, *, origin: str = "mantlet.local/audit", background_wal: bool = False
    ) -> None:
        """``background_wal``: on SQLite, appends never fold the write-ahead log
        into the database themselves (SQLite does it every 1,000 pages, inside
        whichever commit crosses the mark, which is the slowest request in a
        run); the owner calls ``checkpoint_wal`` from a background task."""
        self.origin = origin
        self._engine = _create_engine(url, background_wal=background_wal)
        self._dialect = self._engine.dialect.name
        create_tables(_metadata, self._engine)
        with self._write() as conn:
            if conn.execute(sa.select(head_table.c.id)).first() is None:
                # Another process may create it first.
                with suppress(sa.exc.IntegrityError):
                    conn.execute(
                        head_table.insert().values(
                            id=1,
                            size=0,
                            root=merkle.EMPTY_ROOT,
                            frontier=b"",
                            last_leaf=merkle.EMPTY_ROOT,
                        )
                    )

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def checkpoint_wal(self) -> tuple[int, int]:
        """Folds the SQLite write-ahead log into the database without blocking
        readers or writers (a PASSIVE checkpoint); answers (frames in the log,
        frames folded), or (0, 0) where there is no such log."""
        if self._dialect != "sqlite":
            return (0, 0)
        with self._engine.connect() as conn:
            row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        _busy, frames, folded = (int(v) for v in row)
        return (max(frames, 0), max(folded, 0))

    # -- writing ---------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> int:
        """Appends one record and returns its sequence number."""
        return self.append_many([record])[0]

    def append_many(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        after: Callable[[Connection, list[int]], None] | None = None,
    ) -> list[int]:
        """Appends records in one transaction (group commit). Each record gets
        its ``seq`` and the previous leaf hash written into it before hashing,
        so reordering or renumbering rows shows up as a content mismatch.
        ``after`` runs inside the same transaction (payload rows, say)."""
        if not records:
            return []
        with self._write() as conn:
            frontier, prev = self._lock_head(conn)
            rows: list[dict[str, Any]] = []
            nodes: list[dict[str, Any]] = []
            seqs: list[int] = []
            for record in records:
                seq = frontier.size
                body = canonical_json({**record, "seq": seq, "prev": prev.hex()})
                leaf = merkle.leaf_hash(body)
                nodes.extend(
                    {"level": lv, "idx": ix, "hash": h} for lv, ix, h in frontier.append(leaf)
                )
                tenant = record.get("tenant")
                request_id = record.get("request_id")
                rows.append(
                    {
                        "seq": seq,
                        "tenant": tenant if isinstance(tenant, str) else None,
                        "request_id": request_id if isinstance(request_id, str) else None,
                        "body": body.decode("utf-8"),
                    }
                )
                seqs.append(seq)
                prev = leaf
            conn.execute(_INSERT_RECORD, rows)
            conn.execute(_INSERT_NODES, nodes)
            conn.execute(
                _UPDATE_HEAD,
                {
                    "size": frontier.size,
                    "root": frontier.root(),
                    "frontier": b"".join(frontier.nodes),
                    "last_leaf": prev,
                },
            )
            if after is not None:
                after(conn, seqs)
        return seqs

    def publish_checkpoint(self, signer: NoteSigner) -> Checkpoint:
        """Signs the current head (C2SP checkpoint) and stores the note."""
        head = self.head()
        checkpoint = Checkpoint(origin=self.origin, size=head.size, root=head.root)
        note = signer.sign(checkpoint.body())
        with self._write() as conn:
            exists = conn.execute(
                sa.select(checkpoints_table.c.size).where(checkpoints_table.c.size == head.size)
            ).first()
            if exists is None:
                conn.execute(
                    checkpoints_table.insert().values(
                        size=head.size,
                        root=head.root,
                        note=note,
                        created_at=datetime.now(UTC).isoformat(),
                    )
                )
        return checkpoint.with_note(note)

    # -- reading ---------------------------------------------------------

    def head(self) -> LogHead:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(head_table.c.size, head_table.c.root)).one()
        return LogHead(int(row.size), bytes(row.root))

    def records(
        self,
        *,
        start: int = 0,
        stop: int | None = None,
        tenant: str | None = None,
        batch: int = 5000,
    ) -> Iterator[StoredRecord]:
        """Records in sequence order, fetched in batches (bounded memory)."""
        position = start
        while True:
            query = (
                sa.select(records_table.c.seq, records_table.c.tenant, records_table.c.body)
                .where(records_table.c.seq >= position)
                .order_by(records_table.c.seq)
                .limit(batch)
            )
            if stop is not None:
                query = query.where(records_table.c.seq < stop)
            if tenant is not None:
                query = query.where(records_table.c.tenant == tenant)
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                yield StoredRecord(int(row.seq), row.tenant, row.body)
            if len(rows) < batch:
                return
            position = int(rows[-1].seq) + 1

    def record(self, seq: int) -> StoredRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(records_table.c.seq, records_table.c.tenant, records_table.c.body).where(
                    records_table.c.seq == seq
                )
            ).first()
        return StoredRecord(int(row.seq), row.tenant, row.body) if row else None

    def stored_nodes(self, level: int, start: int, stop: int) -> dict[int, bytes]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(nodes_table.c.idx, nodes_table.c.hash).where(
                    nodes_table.c.level == level,
                    nodes_table.c.idx >= start,
                    nodes_table.c.idx < stop,
                )
            ).all()
        return {int(r.idx): bytes(r.hash) for r in rows}

    def checkpoints(self) -> list[tuple[int, bytes, str]]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    checkpoints_table.c.size, checkpoints_table.c.root, checkpoints_table.c.note
                ).order_by(checkpoints_table.c.size)
            ).all()
        return [(int(r.size), bytes(r.root), r.note) for r in rows]

    def latest_checkpoint(self) -> str | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(checkpoints_table.c.note)
                .order_by(checkpoints_table.c.size.desc())
                .limit(1)
            ).first()
        return row.note if row else None

    # -- proofs ----------------------------------------------------------

    def root(self, size: int) -> bytes:
        self._check_size(size)
        return self._with_nodes(lambda node: merkle.range_hash(0, size, node))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        return self._with_nodes(lambda node: merkle.inclusion_proof(index, size, node))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        self._check_size(second)
        return self._with_nodes(lambda node: merkle.consistency_proof(first, second, node))

    def _check_size(self, size: int) -> None:
        current = self.head().size
        if not 0 < size <= current:
            raise merkle.ProofError(f"tree size {size} is outside 1..{current}")

    def _with_nodes(self, build: Callable[[merkle.NodeLookup], T]) -> T:
        """Runs a proof builder against the node table, fetching every node it
        needs in one query."""
        wanted = merkle.needed_nodes(build)
        found: dict[tuple[int, int], bytes] = {}
        with self._engine.connect() as conn:
            by_level: dict[int, list[int]] = {}
            for level, index in wanted:
                by_level.setdefault(level, []).append(index)
            for level, indices in by_level.items():
                rows = conn.execute(
                    sa.select(nodes_table.c.idx, nodes_table.c.hash).where(
                        nodes_table.c.level == level, nodes_table.c.idx.in_(indices)
                    )
                ).all()
                found.update({(level, int(r.idx)): bytes(r.hash) for r in rows})

        def node(level: int, index: int) -> bytes:
            try:
                return found[(level, index)]
            except KeyError:
                raise merkle.ProofError(f"tree node ({level}, {index}) is missing") from None

        return build(node)

    # -- internals -------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        with self._engine.connect().execution_options(mantlet_write=True) as conn, conn.begin():
            yield conn

    def _lock_head(self, conn: Connection) -> tuple[merkle.Frontier, bytes]:
        """Locks the head row; returns the frontier and the last leaf hash."""
        query = _READ_HEAD if self._dialect == "sqlite" else _READ_HEAD.with_for_update()
        row = conn.execute(query).one()
        blob = bytes(row.frontier)
        nodes = [blob[i : i + 32] for i in range(0, len(blob), 32)]
        return merkle.Frontier(int(row.size), nodes), bytes(row.last_leaf)


# Built once: constructing them was a noticeable share of an append.
_READ_HEAD = sa.select(head_table.c.size, head_table.c.frontier, head_table.c.last_leaf).where(
    head_table.c.id == 1
)
_UPDATE_HEAD = head_table.update().where(head_table.c.id == 1)
_INSERT_RECORD = records_table.insert()
_INSERT_NODES = nodes_table.insert()


def _create_engine(url: str, *, background_wal: bool = False) -> Engine:
    """SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions
    (the write lock is taken before the head is read, so two processes never
    read the same size); other backends are used as configured."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    engine = sa.create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": 30},
        **({"poolclass": StaticPool} if in_memory else {}),
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode survives process crashes (kill -9); only
                # an OS crash or power loss can drop the last commits.
                cursor.execute("PRAGMA synchronous=NORMAL")
                if background_wal:
                    cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute("PRAGMA busy_timeout=30000")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("mantlet_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
