"""A second factor for administrators: TOTP (RFC 6238) codes from an
authenticator app, checked with ``pyotp``.

An admin key that has enrolled must send a current code in the
``x-mantlet-otp`` header on admin routes, so a leaked admin key alone can no
longer mint keys or read every tenant's audit trail. Identity-provider tokens
prove their second factor with the ``amr`` claim instead (see ``tokens``).

Secrets are stored encrypted (AES-256-GCM under a key derived from the
server secret, bound to the key id), so a copy of the database does not
yield them. Each accepted code moves the key's last used time step forward,
so a code is good once (no replay), and ten wrong codes in a row lock the
enrolment until it is renewed: six digits are too few to leave guessing
unlimited to whoever holds the key.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from enum import Enum

import pyotp
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import Engine

from mantlet.core.sql import create_tables

__all__ = ["OTP_HEADER", "MfaResult", "TotpStore"]

OTP_HEADER = "x-mantlet-otp"
ISSUER = "Mantlet"
MAX_FAILURES = 10
_STEP_S = 30
_DIGITS = 6

_metadata = sa.MetaData()
admin_totp = sa.Table(
    "admin_totp",
    _metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("secret", sa.LargeBinary, nullable=False),  # nonce + AES-GCM ciphertext
    sa.Column("last_step", sa.BigInteger, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
)


class MfaResult(Enum):
    OK = "ok"
    NOT_ENROLLED = "not enrolled"
    MISSING = "missing code"
    WRONG = "wrong or reused code"
    LOCKED = "locked after too many wrong codes"


class TotpStore:
    """TOTP enrolments of API keys, on the key store's database."""

    def __init__(
        self, engine: Engine, server_secret: bytes, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._aead = AESGCM(
            HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"mantlet admin totp v1"
            ).derive(server_secret)
        )
        create_tables(_metadata, engine)

    def enroll(self, key_id: str) -> str:
        """A new secret for ``key_id`` (replacing any earlier one, which also
        lifts a lock); returns the ``otpauth://`` URI for the authenticator app."""
        secret = pyotp.random_base32()
        sealed = self._seal(key_id, secret)
        with self._engine.begin() as conn:
            conn.execute(sa.delete(admin_totp).where(admin_totp.c.key_id == key_id))
            conn.execute(
                admin_totp.insert().values(key_id=key_id, secret=sealed, last_step=-1, failures=0)
            )
        return pyotp.TOTP(secret).provisioning_uri(name=key_id, issuer_name=ISSUER)

    def remove(self, key_id: str) -> bool:
        with self._engine.begin() as conn:
            return bool(
                conn.execute(sa.delete(admin_totp).where(admin_totp.c.key_id == key_id)).rowcount
            )

    def transfer(self, old_key_id: str, new_key_id: str) -> None:
        """Move an enrolment to the key that replaced ``old_key_id`` (rotation):
        the factor belongs to the administrator, not to one key secret."""
        with self._engine.begin() as conn:
            row = conn.execute(
                sa.select(admin_totp).where(admin_totp.c.key_id == old_key_id)
            ).first()
            if row is None:
                return
            sealed = self._seal(new_key_id, self._open(old_key_id, row.secret))
            conn.execute(sa.delete(admin_totp).where(admin_totp.c.key_id == old_key_id))
            conn.execute(
                admin_totp.insert().values(
                    key_id=new_key_id,
                    secret=sealed,
                    last_step=row.last_step,
                    failures=row.failures,
                )
            )

    def is_enrolled(self, key_id: str) -> bool:
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(admin_totp.c.key_id).where(admin_totp.c.key_id == key_id)
            ).first()
        return found is not None

    def check(self, key_id: str, code: str | None) -> MfaResult:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(admin_totp).where(admin_totp.c.key_id == key_id)).first()
        if row is None:
            return MfaResult.NOT_ENROLLED
        if row.failures >= MAX_FAILURES:
            return MfaResult.LOCKED
        if not code:
            return MfaResult.MISSING
        try:
            step = self._matching_step(key_id, row.secret, code.replace(" ", ""))
        except InvalidTag:  # not sealed under this server's secret: fail closed
            step = None
        with self._engine.begin() as conn:
            if step is not None and step > row.last_step:
                # Only one request can move the step forward: a replayed code
                # racing the first use finds the row already updated.
                moved = conn.execute(
                    sa.update(admin_totp)
                    .where(admin_totp.c.key_id == key_id, admin_totp.c.last_step < step)
                    .values(last_step=step, failures=0)
                ).rowcount
                if moved:
                    return MfaResult.OK
            conn.execute(
                sa.update(admin_totp)
                .where(admin_totp.c.key_id == key_id)
                .values(failures=admin_totp.c.failures + 1)
            )
        return MfaResult.WRONG

    def _matching_step(self, key_id: str, sealed: bytes, code: str) -> int | None:
        """The time step (now, or one either side for clock drift) whose code
        equals ``code``; every candidate is compared, in constant time."""
        totp = pyotp.TOTP(self._open(key_id, sealed), digits=_DIGITS, interval=_STEP_S)
        now = int(self._clock()) // _STEP_S
        found = None
        for step in (now - 1, now, now + 1):
            if hmac.compare_digest(totp.at(step * _STEP_S).encode(), code.encode()):
                found = step
        return found

    def _seal(self, key_id: str, secret: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, secret.encode("ascii"), key_id.encode())

    def _open(self, key_id: str, sealed: bytes) -> str:
        return self._aead.decrypt(sealed[:12], sealed[12:], key_id.encode()).decode("ascii")
