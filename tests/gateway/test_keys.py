"""API keys: format, verification without oracles, expiry, revocation,
rotation, listing without secrets, and storage that never holds a secret."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mantlet.errors import MantletError
from mantlet.gateway.keys import (
    AuthError,
    KeyConflictError,
    KeyInfo,
    KeyStore,
    PermissionDenied,
    Principal,
    UnknownKeyError,
)

SERVER_SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
KEY_SHAPE = re.compile(r"mk-[a-z2-7]{10}-[A-Za-z0-9]{32}")


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> Iterator[KeyStore]:
    with KeyStore("sqlite://", SERVER_SECRET, clock=clock) as keys:
        yield keys


def _auth_error(store: KeyStore, presented: str) -> str:
    with pytest.raises(AuthError) as caught:
        store.verify(presented)
    return str(caught.value)


# -- format and round trip ------------------------------------------------------


def test_create_then_verify_round_trip(store: KeyStore, clock: FakeClock) -> None:
    key, info = store.create(tenant="acme", role="user", name="ci", models=["gpt-4o"])
    assert KEY_SHAPE.fullmatch(key)
    assert key.split("-")[1] == info.key_id
    assert info == KeyInfo(
        key_id=info.key_id,
        name="ci",
        tenant="acme",
        role="user",
        models=("gpt-4o",),
        created_at=clock.now,
        expires_at=None,
        revoked_at=None,
    )
    assert store.verify(key) == Principal(info.key_id, "acme", "user", ("gpt-4o",))


def test_keys_are_unique(store: KeyStore) -> None:
    keys = [store.create(tenant="t", role="user")[0] for _ in range(50)]
    assert len(set(keys)) == 50
    assert len({k.split("-")[1] for k in keys}) == 50
    assert len({k.split("-")[2] for k in keys}) == 50


def test_timestamps_are_utc_aware(store: KeyStore) -> None:
    local = timezone(timedelta(hours=5))
    expires = datetime(2031, 1, 1, 17, 0, tzinfo=local)
    _, created = store.create(tenant="t", role="user", expires_at=expires)
    (listed,) = store.list()
    assert listed.created_at == START and listed.created_at.tzinfo == UTC
    assert listed.expires_at == expires and listed.expires_at is not None
    assert listed.expires_at.utcoffset() == timedelta(0)
    assert created.expires_at == expires


# -- rejections that must not leak the input ------------------------------------


def test_wrong_secret_and_unknown_id_answer_alike(store: KeyStore) -> None:
    key, _ = store.create(tenant="t", role="user")
    prefix, key_id, secret = key.split("-")
    wrong_secret = f"{prefix}-{key_id}-{'A' * 32 if secret != 'A' * 32 else 'B' * 32}"
    unknown_id = f"{prefix}-{'a' * 10 if key_id != 'a' * 10 else 'b' * 10}-{secret}"
    messages = {_auth_error(store, wrong_secret), _auth_error(store, unknown_id)}
    assert messages == {"invalid API key"}


def test_unknown_id_still_computes_an_hmac(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = KeyStore._hash

    def counting(self: KeyStore, secret: str) -> str:
        calls.append(secret)
        return real(self, secret)

    monkeypatch.setattr(KeyStore, "_hash", counting)
    _auth_error(store, "mk-" + "a" * 10 + "-" + "Z" * 32)
    assert calls == ["Z" * 32]


MALFORMED = [
    pytest.param("", id="empty"),
    pytest.param("mk", id="prefix-only"),
    pytest.param("mk-abcdefghij", id="no-secret"),
    pytest.param("mk-abcdefghij-", id="empty-secret"),
    pytest.param("mk--" + "A" * 32, id="empty-id"),
    pytest.param("abcdefghij-" + "A" * 32, id="no-prefix"),
    pytest.param("sk-abcdefghij-" + "A" * 32, id="wrong-prefix"),
    pytest.param("MK-abcdefghij-" + "A" * 32, id="upper-prefix"),
    pytest.param("mk_abcdefghij_" + "A" * 32, id="wrong-separator"),
    pytest.param("mk-ABCDEFGHIJ-" + "A" * 32, id="upper-id"),
    pytest.param("mk-abcdefgh01-" + "A" * 32, id="id-not-base32"),
    pytest.param("mk-abcdefghi-" + "A" * 33, id="short-id"),
    pytest.param("mk-abcdefghij-" + "A" * 31, id="short-secret"),
    pytest.param("mk-abcdefghij-" + "A" * 33, id="long-secret"),
    pytest.param("mk-abcdefghij-" + "A" * 31 + "_", id="secret-not-base62"),
    pytest.param("mk-abcdefghij-" + "A" * 31 + "é", id="non-ascii-secret"),
    pytest.param("mk-abcdéfghij-" + "A" * 32, id="non-ascii-id"),
    pytest.param("mk-abcdefghij-" + "Ａ" * 32, id="fullwidth-secret"),
    pytest.param(" mk-abcdefghij-" + "A" * 31, id="leading-space"),
    pytest.param("mk-abcdefghij-" + "A" * 31 + "\n", id="trailing-newline"),
    pytest.param("mk-abcdefghij-" + "A" * 30 + "\x00A", id="nul"),
    pytest.param("mk-abcdefghij-" + "A" * 1_000_000, id="huge"),
]


@pytest.mark.parametrize("presented", MALFORMED)
def test_malformed_keys_are_rejected_without_echo(store: KeyStore, presented: str) -> None:
    message = _auth_error(store, presented)
    assert message == "invalid API key"
    if presented:
        assert presented not in message
        assert presented.strip()[:14] not in message


def test_rejection_does_not_chain_the_input(store: KeyStore) -> None:
    with pytest.raises(AuthError) as caught:
        store.verify("mk-" + "é" * 43)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_non_string_is_rejected_like_a_bad_key(store: KeyStore) -> None:
    assert _auth_error(store, b"mk-abcdefghij-" + b"A" * 32) == "invalid API key"  # type: ignore[arg-type]


def test_error_statuses() -> None:
    assert (AuthError.status, PermissionDenied.status, UnknownKeyError.status) == (401, 403, 404)
    for error in (AuthError, PermissionDenied, UnknownKeyError, KeyConflictError):
        assert issubclass(error, MantletError)


# -- expiry, revocation, rotation -----------------------------------------------


def test_expiry_follows_the_clock(store: KeyStore, clock: FakeClock) -> None:
    key, _ = store.create(tenant="t", role="user", expires_at=START + timedelta(hours=1))
    clock.advance(timedelta(minutes=59, seconds=59))
    assert store.verify(key).tenant == "t"
    clock.advance(timedelta(seconds=1))
    assert _auth_error(store, key) == "API key expired"


def test_expiry_is_only_reported_for_the_right_secret(store: KeyStore, clock: FakeClock) -> None:
    key, info = store.create(tenant="t", role="user", expires_at=START + timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    assert _auth_error(store, f"mk-{info.key_id}-{'Q' * 32}") == "invalid API key"
    assert _auth_error(store, key) == "API key expired"


@pytest.mark.parametrize(
    ("expires_at", "error"),
    [
        (START, ValueError),
        (START - timedelta(seconds=1), ValueError),
        (datetime(2031, 1, 1), ValueError),  # naive
    ],
    ids=["now", "past", "naive"],
)
def test_create_rejects_bad_expiry(
    store: KeyStore, expires_at: datetime, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.create(tenant="t", role="user", expires_at=expires_at)


def test_revoke_takes_effect_immediately(store: KeyStore, clock: FakeClock) -> None:
    key, info = store.create(tenant="t", role="user")
    other, _ = store.create(tenant="t", role="user")
    store.verify(key)
    store.revoke(info.key_id)
    assert _auth_error(store, key) == "API key revoked"
    assert store.verify(other).tenant == "t"
    (revoked,) = [k for k in store.list() if k.key_id == info.key_id]
    assert revoked.revoked_at == clock.now


def test_revoke_is_idempotent_and_keeps_first_time(store: KeyStore, clock: FakeClock) -> None:
    _, info = store.create(tenant="t", role="user")
    store.revoke(info.key_id)
    first = clock.now
    clock.advance(timedelta(hours=1))
    store.revoke(info.key_id)
    assert store.list()[0].revoked_at == first


def test_revocation_is_seen_by_another_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    with KeyStore(url, SERVER_SECRET) as gateway, KeyStore(url, SERVER_SECRET) as admin:
        key, info = admin.create(tenant="t", role="user")
        gateway.verify(key)
        admin.revoke(info.key_id)
        assert _auth_error(gateway, key) == "API key revoked"


@pytest.mark.parametrize("key_id", ["aaaaaaaaaa", "", "mk-abcdefghij-" + "A" * 32])
def test_unknown_key_id_for_admin_operations(store: KeyStore, key_id: str) -> None:
    with pytest.raises(UnknownKeyError) as revoke_error:
        store.revoke(key_id)
    with pytest.raises(UnknownKeyError) as rotate_error:
        store.rotate(key_id)
    for error in (revoke_error, rotate_error):
        assert error.value.status == 404
        if len(key_id) > 10:
            assert key_id not in str(error.value)


def test_rotate(store: KeyStore, clock: FakeClock) -> None:
    expires = START + timedelta(days=30)
    old_key, old = store.create(
        tenant="acme", role="admin", name="deploy", models=["a", "b"], expires_at=expires
    )
    clock.advance(timedelta(minutes=5))
    new_key, new = store.rotate(old.key_id)

    assert new_key != old_key and new.key_id != old.key_id
    assert KEY_SHAPE.fullmatch(new_key)
    assert (new.name, new.tenant, new.role, new.models) == ("deploy", "acme", "admin", ("a", "b"))
    assert (new.created_at, new.expires_at, new.revoked_at) == (clock.now, expires, None)
    assert new.rotated_from == old.key_id
    assert _auth_error(store, old_key) == "API key revoked"
    assert store.verify(new_key) == Principal(new.key_id, "acme", "admin", ("a", "b"))

    listed = {k.key_id: k for k in store.list()}
    assert listed[new.key_id] == new
    assert listed[old.key_id].revoked_at == clock.now
    assert listed[old.key_id].rotated_from is None


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_rotate_refuses_dead_keys(store: KeyStore, clock: FakeClock, state: str) -> None:
    _, info = store.create(tenant="t", role="user", expires_at=START + timedelta(hours=1))
    if state == "revoked":
        store.revoke(info.key_id)
    else:
        clock.advance(timedelta(hours=1))
    with pytest.raises(KeyConflictError, match=f"is {state}"):
        store.rotate(info.key_id)
    assert [k.key_id for k in store.list()] == [info.key_id]


def test_concurrent_rotation_issues_one_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process rotates the key between this rotation's read and its
    write; this one must then give up rather than issue a second successor."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    with KeyStore(url, SERVER_SECRET) as ours, KeyStore(url, SERVER_SECRET) as theirs:
        _, info = ours.create(tenant="t", role="user")
        real_fetch = KeyStore._fetch
        raced: list[str] = []
        racing = False

        def fetch_then_race(conn: sa.Connection, key_id: str) -> sa.Row[Any] | None:
            nonlocal racing
            row = real_fetch(conn, key_id)
            if not racing:  # only the first fetch races; theirs runs unhindered
                racing = True
                raced.append(theirs.rotate(key_id)[1].key_id)
            return row

        monkeypatch.setattr(KeyStore, "_fetch", staticmethod(fetch_then_race))
        with pytest.raises(KeyConflictError):
            ours.rotate(info.key_id)
        monkeypatch.undo()
        successors = [k.key_id for k in ours.list() if k.rotated_from == info.key_id]
        assert successors == raced


# -- listing and storage ---------------------------------------------------------


def test_list_filters_by_tenant(store: KeyStore, clock: FakeClock) -> None:
    _, a1 = store.create(tenant="a", role="user")
    clock.advance(timedelta(seconds=1))
    _, b1 = store.create(tenant="b", role="user")
    clock.advance(timedelta(seconds=1))
    _, a2 = store.create(tenant="a", role="admin")
    assert [k.key_id for k in store.list(tenant="a")] == [a1.key_id, a2.key_id]
    assert [k.key_id for k in store.list(tenant="b")] == [b1.key_id]
    assert store.list(tenant="c") == []
    assert [k.key_id for k in store.list()] == [a1.key_id, b1.key_id, a2.key_id]


def test_listing_never_exposes_secret_or_hash(store: KeyStore) -> None:
    key, _ = store.create(tenant="t", role="user", name="n")
    secret = key.split("-")[2]
    with store._engine.connect() as conn:
        stored_hash = conn.execute(sa.text("SELECT secret_hash FROM api_keys")).scalar_one()

    fields = {f.name for f in dataclasses.fields(KeyInfo)}
    assert not {"secret", "secret_hash", "hash"} & fields
    assert not any("secret" in name or "hash" in name for name in fields)
    (info,) = store.list()
    for text in (repr(info), str(info), repr(store.list()), repr(store.verify(key))):
        assert secret not in text
        assert stored_hash not in text
        assert key not in text


def test_database_row_never_holds_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    with KeyStore(f"sqlite:///{path}", SERVER_SECRET) as keys:
        key, info = keys.create(tenant="t", role="user", name="n", models=["m"])
        secret = key.split("-")[2]
        keys.rotate(info.key_id)
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT * FROM api_keys").fetchall()
    assert len(rows) == 2
    for row in rows:
        for value in row:
            assert secret not in str(value)
            assert key not in str(value)
    hashes = [row[0] for row in sqlite3.connect(path).execute("SELECT secret_hash FROM api_keys")]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
    assert path.read_bytes().find(secret.encode()) == -1


def test_persists_across_instances(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    with KeyStore(url, SERVER_SECRET) as first:
        key, info = first.create(tenant="t", role="user", models=["m"])
    with KeyStore(url, SERVER_SECRET) as second:
        assert second.verify(key) == Principal(info.key_id, "t", "user", ("m",))
        assert second.list() == [info]


def test_file_database_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    with KeyStore(f"sqlite:///{path}", SERVER_SECRET) as keys:
        keys.create(tenant="t", role="user")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_in_memory_store_shares_one_database_across_threads(store: KeyStore) -> None:
    key, _ = store.create(tenant="t", role="user")
    results: list[str] = []
    thread = threading.Thread(target=lambda: results.append(store.verify(key).tenant))
    thread.start()
    thread.join()
    assert results == ["t"]


def test_other_server_secret_cannot_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    with KeyStore(url, SERVER_SECRET) as first:
        key, _ = first.create(tenant="t", role="user")
    with KeyStore(url, OTHER_SECRET) as second:
        assert _auth_error(second, key) == "invalid API key"


# -- construction and arguments -------------------------------------------------


@pytest.mark.parametrize("length", [0, 16, 31])
def test_short_server_secret_is_refused(length: int) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        KeyStore("sqlite://", b"x" * length)


def test_naive_clock_is_refused() -> None:
    naive = datetime(2030, 1, 1)
    with (
        KeyStore("sqlite://", SERVER_SECRET, clock=lambda: naive) as keys,
        pytest.raises(ValueError, match="timezone-aware"),
    ):
        keys.create(tenant="t", role="user")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tenant": "", "role": "user"}, ValueError),
        ({"tenant": "t", "role": ""}, ValueError),
        ({"tenant": "t" * 201, "role": "user"}, ValueError),
        ({"tenant": "t", "role": "user", "models": []}, ValueError),
        ({"tenant": "t", "role": "user", "models": [""]}, ValueError),
        ({"tenant": "t", "role": "user", "models": "gpt-4o"}, TypeError),
    ],
    ids=["empty-tenant", "empty-role", "long-tenant", "no-models", "empty-model", "bare-string"],
)
def test_create_validates_arguments(
    store: KeyStore, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.create(**kwargs)  # type: ignore[arg-type]
    assert store.list() == []


# -- Principal.may_use ----------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "model", "allowed"),
    [
        (None, "gpt-4o", True),
        (None, "", True),
        (("gpt-4o",), "gpt-4o", True),
        (("gpt-4o", "llama3"), "llama3", True),
        (("gpt-4o",), "gpt-4o-mini", False),
        (("gpt-4o",), "gpt-4", False),
        (("gpt-4o",), "GPT-4O", False),
        ((), "gpt-4o", False),
    ],
)
def test_may_use(models: tuple[str, ...] | None, model: str, allowed: bool) -> None:
    assert Principal("k", "t", "user", models).may_use(model) is allowed


def test_models_round_trip_through_storage(store: KeyStore) -> None:
    every, _ = store.create(tenant="t", role="user")
    some, _ = store.create(tenant="t", role="user", models=["a", "b", "a"])
    assert store.verify(every).models is None
    assert store.verify(some).models == ("a", "b")
    assert store.verify(some).may_use("b") and not store.verify(some).may_use("c")
    with store._engine.connect() as conn:
        nulls = conn.execute(sa.text("SELECT COUNT(*) FROM api_keys WHERE models IS NULL"))
        assert nulls.scalar_one() == 1


def test_info_answers_one_key_without_its_secret(store: KeyStore) -> None:
    key, created = store.create(tenant="acme", role="auditor", name="ci")
    found = store.info(created.key_id)
    assert found == created
    assert key not in repr(found)
    assert store.info("aaaaaaaaaa") is None
