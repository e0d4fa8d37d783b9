"""API keys for the gateway: issue, verify, revoke, rotate, list.

Every request to the gateway carries a key; nothing is trusted by network
position. A key reads ``mk-<key_id>-<secret>``:

* ``key_id`` is 10 lower-case base32 characters. It is the row's primary key
  and safe to log, so operators can tell keys apart without seeing secrets.
* ``secret`` is 32 base62 characters (about 190 bits). Only
  ``HMAC-SHA256(server_secret, secret)`` is stored, so a copy of the database
  alone does not let anyone authenticate, and a stolen database plus a guessed
  secret cannot be checked offline without the server secret either.

Verification never says *why* an unknown or wrong key failed: unknown ids and
wrong secrets get the same message and both cost one HMAC, so the answer is no
oracle for which key ids exist. Expiry and revocation are only reported once
the secret has been proven, for the same reason.

Storage is plain SQLAlchemy Core on one table, so the same code runs on SQLite
(the default, a file next to the gateway) and PostgreSQL.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.pool import StaticPool

from mantlet.core.sql import create_tables
from mantlet.errors import MantletError

__all__ = [
    "AuthError",
    "KeyConflictError",
    "KeyInfo",
    "KeyStore",
    "PermissionDenied",
    "Principal",
    "UnknownKeyError",
    "utc_now",
]

KEY_PREFIX = "mk"
KEY_ID_LENGTH = 10
SECRET_LENGTH = 32
MIN_SERVER_SECRET_BYTES = 32

_KEY_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower-cased
_SECRET_ALPHABET = string.ascii_letters + string.digits  # base62: no '-' to split on
_KEY_LENGTH = len(KEY_PREFIX) + 1 + KEY_ID_LENGTH + 1 + SECRET_LENGTH
# Explicit ASCII classes: `\w` or `str.isalnum` would admit non-ASCII letters.
_KEY_PATTERN = re.compile(
    rf"{KEY_PREFIX}-([a-z2-7]{{{KEY_ID_LENGTH}}})-([A-Za-z0-9]{{{SECRET_LENGTH}}})"
)
# Compared against when the key id is unknown, so that path costs the same HMAC
# and comparison as a wrong secret.
_NO_SUCH_HASH = "0" * 64
# A key id collision has probability ~n/2**50 per insert; a few retries make
# failing for that reason practically impossible.
_ID_ATTEMPTS = 3

_NAME_MAX = 200
_TENANT_MAX = 200
_ROLE_MAX = 64
_MODEL_MAX = 200

_INVALID = "invalid API key"
_EXPIRED = "API key expired"
_REVOKED = "API key revoked"


class AuthError(MantletError):
    """The request did not prove who it is; the gateway answers HTTP 401.

    Messages are fixed strings and never echo the presented key.
    """

    status: ClassVar[int] = 401


class PermissionDenied(MantletError):
    """Authenticated, but the principal may not do this; HTTP 403."""

    status: ClassVar[int] = 403


class UnknownKeyError(MantletError):
    """An admin operation named a key id that does not exist; HTTP 404."""

    status: ClassVar[int] = 404


class KeyConflictError(MantletError):
    """The key's state forbids the operation (rotating a revoked or expired
    key would bring a dead credential back to life); HTTP 409."""

    status: ClassVar[int] = 409


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified request acts as."""

    key_id: str
    tenant: str
    role: str
    models: tuple[str, ...] | None  # None: every model
    mfa: bool = False  # an identity provider vouched for a second factor (token ``amr``)

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as listed to administrators: never the secret or its hash, so
    listing output can be logged or shown freely."""

    key_id: str
    name: str
    tenant: str
    role: str
    models: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ISO timestamps, lists for tuples."""
        row = dataclasses.asdict(self)
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = value.isoformat()
            elif isinstance(value, tuple):
                row[key] = list(value)
        return row


class _UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out on every backend.

    PostgreSQL keeps the zone (``timestamptz``); SQLite stores naive text and
    hands back naive values, which are UTC because that is all we write.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return _require_aware(value, "timestamp")

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    _metadata,
    sa.Column("key_id", sa.String(KEY_ID_LENGTH), primary_key=True),
    sa.Column("name", sa.String(_NAME_MAX), nullable=False, default=""),
    sa.Column("tenant", sa.String(_TENANT_MAX), nullable=False, index=True),
    sa.Column("role", sa.String(_ROLE_MAX), nullable=False),
    # SQL NULL (not JSON null) means every model, so "IS NULL" works in SQL too.
    sa.Column("models", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", _UTCDateTime(), nullable=False),
    sa.Column("expires_at", _UTCDateTime(), nullable=True),
    sa.Column("revoked_at", _UTCDateTime(), nullable=True),
    sa.Column(
        "rotated_from", sa.String(KEY_ID_LENGTH), sa.ForeignKey("api_keys.key_id"), nullable=True
    ),
)


# Built once: constructing the statement cost half of a verify (about 45 µs).
_BY_KEY_ID = sa.select(api_keys).where(api_keys.c.key_id == sa.bindparam("key_id"))


class KeyStore:
    """API keys in a SQL database.

    Every ``verify`` reads the database, so a revocation made through any
    ``KeyStore`` on the same database takes effect on the next request.
    """

    def __init__(
        self,
        url: str,
        server_secret: bytes,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not isinstance(server_secret, bytes | bytearray):
            raise TypeError("server_secret must be bytes")
        if len(server_secret) < MIN_SERVER_SECRET_BYTES:
            raise ValueError(
                f"server_secret must be at least {MIN_SERVER_SECRET_BYTES} bytes "
                f"(got {len(server_secret)})"
            )
        self._server_secret = bytes(server_secret)
        self._clock = clock
        self._engine = _create_engine(url)
        create_tables(_metadata, self._engine)

    @property
    def engine(self) -> Engine:
        """The database, for tables that live beside the keys (second factors)."""
        return self._engine

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create(
        self,
        *,
        tenant: str,
        role: str,
        name: str = "",
        models: Sequence[str] | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, KeyInfo]:
        """Issue a key. The full key string is returned here and nowhere else;
        the caller must hand it to its owner now."""
        tenant = _check_text(tenant, "tenant", _TENANT_MAX)
        role = _check_text(role, "role", _ROLE_MAX)
        name = _check_text(name, "name", _NAME_MAX, allow_empty=True)
        allowed = _check_models(models)
        now = self._now()
        if expires_at is not None:
            expires_at = _require_aware(expires_at, "expires_at")
            if expires_at <= now:
                raise ValueError("expires_at must be in the future")
        for attempt in range(_ID_ATTEMPTS):
            key_id, secret = _new_key_id(), _new_secret()
            info = KeyInfo(key_id, name, tenant, role, allowed, now, expires_at, None)
            try:
                with self._engine.begin() as conn:
                    self._insert(conn, info, secret)
            except sa.exc.IntegrityError:
                if attempt + 1 == _ID_ATTEMPTS:
                    raise
                continue
            return _format_key(key_id, secret), info
        raise AssertionError("unreachable")

    def verify(self, presented: str) -> Principal:
        """The principal a presented key stands for, or ``AuthError``."""
        parsed = _parse_key(presented)
        if parsed is None:
            raise AuthError(_INVALID)
        key_id, secret = parsed
        with self._engine.connect() as conn:
            row = conn.execute(_BY_KEY_ID, {"key_id": key_id}).first()
        stored = _NO_SUCH_HASH if row is None else str(row.secret_hash)
        matches = hmac.compare_digest(self._hash(secret), stored)
        if row is None or not matches:
            raise AuthError(_INVALID)
        info = _info_from_row(row)
        if info.revoked_at is not None:
            raise AuthError(_REVOKED)
        if info.expires_at is not None and self._now() >= info.expires_at:
            raise AuthError(_EXPIRED)
        return Principal(info.key_id, info.tenant, info.role, info.models)

    def revoke(self, key_id: str) -> None:
        """Revoke a key from the next request on. Revoking twice keeps the
        first revocation time."""
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._now())
            )
            if result.rowcount == 0 and self._fetch(conn, key_id) is None:
                raise UnknownKeyError(f"no API key with id {_loggable_id(key_id)}")

    def rotate(self, key_id: str) -> tuple[str, KeyInfo]:
        """Replace a key with a new one of the same name, tenant, role, models
        and expiry; the old key is revoked in the same transaction, so there is
        never a moment with both or neither usable.

        Expiry is kept rather than extended: rotation answers a leaked secret,
        it is not a way to prolong a key's life.
        """
        for attempt in range(_ID_ATTEMPTS):
            try:
                with self._engine.begin() as conn:
                    return self._rotate(conn, key_id)
            except sa.exc.IntegrityError:
                if attempt + 1 == _ID_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def info(self, key_id: str) -> KeyInfo | None:
        """One key's metadata (never its secret), or None when there is none."""
        with self._engine.connect() as conn:
            row = self._fetch(conn, key_id)
        return None if row is None else _info_from_row(row)

    def list(self, *, tenant: str | None = None) -> builtins.list[KeyInfo]:
        """Keys, oldest first, optionally of one tenant only."""
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self._engine.connect() as conn:
            return [_info_from_row(row) for row in conn.execute(query)]

    def close(self) -> None:
        self._engine.dispose()

    def _rotate(self, conn: Connection, key_id: str) -> tuple[str, KeyInfo]:
        row = self._fetch(conn, key_id)
        if row is None:
            raise UnknownKeyError(f"no API key with id {_loggable_id(key_id)}")
        old = _info_from_row(row)
        now = self._now()
        if old.revoked_at is not None:
            raise KeyConflictError(f"API key {old.key_id} is revoked; create a new key instead")
        if old.expires_at is not None and now >= old.expires_at:
            raise KeyConflictError(f"API key {old.key_id} is expired; create a new key instead")
        # Compare-and-set: of two concurrent rotations only one revokes the
        # old key, and the other rolls back without issuing a second key.
        result = conn.execute(
            sa.update(api_keys)
            .where(api_keys.c.key_id == old.key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        if result.rowcount != 1:
            raise KeyConflictError(f"API key {old.key_id} was revoked concurrently")
        secret = _new_secret()
        new = KeyInfo(
            key_id=_new_key_id(),
            name=old.name,
            tenant=old.tenant,
            role=old.role,
            models=old.models,
            created_at=now,
            expires_at=old.expires_at,
            revoked_at=None,
            rotated_from=old.key_id,
        )
        self._insert(conn, new, secret)
        return _format_key(new.key_id, secret), new

    def _insert(self, conn: Connection, info: KeyInfo, secret: str) -> None:
        conn.execute(
            sa.insert(api_keys).values(
                key_id=info.key_id,
                name=info.name,
                tenant=info.tenant,
                role=info.role,
                models=None if info.models is None else builtins.list(info.models),
                secret_hash=self._hash(secret),
                created_at=info.created_at,
                expires_at=info.expires_at,
                revoked_at=info.revoked_at,
                rotated_from=info.rotated_from,
            )
        )

    @staticmethod
    def _fetch(conn: Connection, key_id: str) -> sa.Row[Any] | None:
        return conn.execute(_BY_KEY_ID, {"key_id": key_id}).first()

    def _hash(self, secret: str) -> str:
        return hmac.new(self._server_secret, secret.encode("ascii"), hashlib.sha256).hexdigest()

    def _now(self) -> datetime:
        return _require_aware(self._clock(), "clock()")


def _create_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite gets the settings a multi-threaded server
    needs; any other backend is used as configured in the URL."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    if in_memory:
        # One shared connection: each new connection to `sqlite://` would be
        # a new, empty database.
        engine = sa.create_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False})
    sa.event.listen(engine, "connect", _sqlite_pragmas(wal=not in_memory))
    return engine


def _sqlite_pragmas(*, wal: bool) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # SQLite leaves foreign keys off unless asked, per connection.
            cursor.execute("PRAGMA foreign_keys=ON")
            if wal:
                # Readers (every request) no longer block the rare writer.
                cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    return on_connect


def _parse_key(presented: object) -> tuple[str, str] | None:
    """``(key_id, secret)``, or ``None`` for anything not shaped like a key.

    The length test comes first so an oversized header costs nothing more.
    """
    if not isinstance(presented, str) or len(presented) != _KEY_LENGTH:
        return None
    match = _KEY_PATTERN.fullmatch(presented)
    if match is None:
        return None
    return match.group(1), match.group(2)


def _format_key(key_id: str, secret: str) -> str:
    return f"{KEY_PREFIX}-{key_id}-{secret}"


def _new_key_id() -> str:
    return "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))


def _new_secret() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def _loggable_id(key_id: object) -> str:
    """``key_id`` quoted for an error message if it looks like one, else a
    placeholder: admin input may be a full key pasted by mistake."""
    if isinstance(key_id, str) and re.fullmatch(r"[a-z2-7]{10}", key_id):
        return repr(key_id)
    return "<malformed id>"


def _info_from_row(row: sa.Row[Any]) -> KeyInfo:
    models = row.models
    return KeyInfo(
        key_id=str(row.key_id),
        name=str(row.name),
        tenant=str(row.tenant),
        role=str(row.role),
        models=None if models is None else tuple(str(m) for m in models),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        rotated_from=row.rotated_from,
    )


def _require_aware(value: datetime, what: str) -> datetime:
    """``value`` in UTC. Naive datetimes are refused: guessing their zone is
    how keys end up expiring hours early or late."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


def _check_text(value: str, what: str, max_length: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string")
    if not value and not allow_empty:
        raise ValueError(f"{what} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{what} is longer than {max_length} characters")
    return value


def _check_models(models: Sequence[str] | None) -> tuple[str, ...] | None:
    """``None`` (every model) or a non-empty tuple without duplicates.

    A bare string is refused: it is a ``Sequence[str]`` too, and would
    otherwise become one model per character. An empty list is refused as
    well, since a key for no model at all is almost certainly a mistake.
    """
    if models is None:
        return None
    if isinstance(models, str):
        raise TypeError("models must be a list of model names, not a string")
    checked = tuple(_check_text(m, "model name", _MODEL_MAX) for m in models)
    if not checked:
        raise ValueError("models must be None (every model) or a non-empty list")
    return tuple(dict.fromkeys(checked))
