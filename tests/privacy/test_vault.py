"""The pseudonym vault: encrypted at rest, keyed lookups, TTL."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from mantlet.errors import ConfigError
from mantlet.privacy import Vault, VaultError, generate_key, load_or_create_key

SECRET_VALUE = "jane.roe@example.org"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_round_trip_and_per_conversation_isolation() -> None:
    vault = Vault(generate_key())
    vault.put("c1", "EMAIL_ADDRESS", SECRET_VALUE, "<EMAIL_ADDRESS_1>")
    assert vault.surrogate_for("c1", "EMAIL_ADDRESS", SECRET_VALUE) == "<EMAIL_ADDRESS_1>"
    assert vault.mapping("c1") == {"<EMAIL_ADDRESS_1>": SECRET_VALUE}
    assert vault.surrogate_for("c2", "EMAIL_ADDRESS", SECRET_VALUE) is None
    assert vault.mapping("c2") == {}
    assert vault.count("c1", "EMAIL_ADDRESS") == 1


def test_vault_file_holds_no_plaintext_and_is_unreadable_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    key = generate_key()
    vault = Vault(key, path)
    vault.put("conversation-42", "EMAIL_ADDRESS", SECRET_VALUE, "<EMAIL_ADDRESS_1>")
    vault.close()
    raw = path.read_bytes()
    assert SECRET_VALUE.encode() not in raw
    assert b"conversation-42" not in raw
    with sqlite3.connect(path) as db:
        payloads = [row[0] for row in db.execute("SELECT payload FROM pseudonyms")]
    assert payloads and all(SECRET_VALUE.encode() not in p for p in payloads)

    # Another key finds nothing (lookups are keyed) ...
    stranger = Vault(generate_key(), path)
    assert stranger.mapping("conversation-42") == {}
    assert stranger.surrogate_for("conversation-42", "EMAIL_ADDRESS", SECRET_VALUE) is None
    stranger.close()
    # ... and cannot decrypt a row even when pointed straight at it.
    with sqlite3.connect(path) as db:
        conv = db.execute("SELECT conversation FROM pseudonyms").fetchone()[0]
    stranger = Vault(generate_key(), path)
    with pytest.raises(VaultError):
        stranger._open(conv, payloads[0])
    stranger.close()
    # The right key still reads it.
    assert Vault(key, path).mapping("conversation-42") == {"<EMAIL_ADDRESS_1>": SECRET_VALUE}


def test_tampered_rows_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    key = generate_key()
    Vault(key, path).put("c", "PERSON", "Jane Roe", "<PERSON_1>")
    with sqlite3.connect(path) as db:
        (payload,) = db.execute("SELECT payload FROM pseudonyms").fetchone()
        flipped = payload[:-1] + bytes([payload[-1] ^ 1])
        db.execute("UPDATE pseudonyms SET payload=?", (flipped,))
    with pytest.raises(VaultError):
        Vault(key, path).mapping("c")


def test_entries_expire_after_the_ttl_and_use_refreshes_it() -> None:
    clock = Clock()
    vault = Vault(generate_key(), ttl_s=60, clock=clock)
    vault.put("c", "PERSON", "Jane Roe", "<PERSON_1>")
    clock.now += 50
    vault.put("c", "PERSON", "John Doe", "<PERSON_2>")  # refreshes the conversation
    clock.now += 50
    assert len(vault.mapping("c")) == 2
    clock.now += 61
    assert vault.mapping("c") == {}
    assert vault.purge_expired() == 2


def test_key_file_is_created_0600_and_bad_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "vault.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    with pytest.raises(ConfigError):
        Vault(b"short")
    path.write_text("abcd")
    with pytest.raises(ConfigError):
        load_or_create_key(path)


# Each worker process allocates surrogates for its own values and for one
# value every worker shares, in the same conversation of one vault file.
_WORKER = """
import json, sys
from mantlet.detectors.pii import PiiDetector
from mantlet.privacy import Pseudonymizer, Vault
path, key, worker = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
pseudonymizer = Pseudonymizer(PiiDetector(), Vault(key, path))
pairs = []
for i in range(40):
    for value in (f"person {worker}-{i}", "person shared"):
        pairs.append((value, pseudonymizer.surrogate("shared", "PERSON", value, "")))
print(json.dumps(pairs))
"""


def test_processes_sharing_a_vault_file_never_share_a_surrogate(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    path, key = str(tmp_path / "vault.db"), generate_key()
    Vault(key, path).close()  # create the file and schema once
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, path, key.hex(), str(w)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    pairs = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        pairs.extend(json.loads(out))
    by_value: dict[str, set[str]] = {}
    for value, surrogate in pairs:
        by_value.setdefault(value, set()).add(surrogate)
    assert all(len(s) == 1 for s in by_value.values())  # one surrogate per value
    surrogates = {next(iter(s)) for s in by_value.values()}
    assert len(surrogates) == len(by_value) == 3 * 40 + 1  # never two values on one
    vault = Vault(key, path)
    assert vault.mapping("shared") == {next(iter(s)): v for v, s in by_value.items()}
    vault.close()
