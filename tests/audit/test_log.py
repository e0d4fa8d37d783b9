"""The stored log: tampering of every kind is caught by `mantlet audit
verify`, proofs verify against the published signed checkpoint, and a kill -9
during appends loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mantlet.audit import Checkpoint, CheckpointError, NoteSigner, NoteVerifier, merkle, verify_log
from mantlet.cli.app import app
from mantlet.crypto.signing import SigningKey
from mantlet.gateway.accountability import Accountability, AuditUnavailable
from mantlet.gateway.settings import GatewaySettings

runner = CliRunner()


def open_trail(data_dir: Path) -> Accountability:
    return Accountability.open(GatewaySettings(data_dir=data_dir))


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    trail = open_trail(tmp_path)
    for i in range(40):
        trail.append_sync({"type": "request", "tenant": f"t{i % 3}", "n": i})
    trail.publish_checkpoint()
    trail.close()
    return tmp_path


def cli_verify(data_dir: Path, *extra: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["audit", "verify", "--data-dir", str(data_dir), "--json", *extra])
    return result.exit_code, json.loads(result.stdout)


def sql(data_dir: Path, *statements: str) -> None:
    db = sqlite3.connect(data_dir / "mantlet.db")
    with db:
        for statement in statements:
            db.execute(statement)
    db.close()


def test_untouched_log_verifies(filled: Path) -> None:
    code, report = cli_verify(filled)
    assert code == 0
    assert report["ok"] is True and report["records"] == 40
    assert report["checkpoints_checked"] == 1


def test_edit_is_caught_and_named(filled: Path) -> None:
    sql(
        filled, "UPDATE audit_records SET body = replace(body, '\"n\":17', '\"n\":71') WHERE seq=17"
    )
    code, report = cli_verify(filled)
    assert code == 1
    assert report["first_bad"]["seq"] == 17  # type: ignore[index]


def test_edit_with_recomputed_leaf_is_caught_by_the_tree(filled: Path) -> None:
    trail = open_trail(filled)
    body = trail.log.record(9).body.replace('"n":9', '"n":90')  # type: ignore[union-attr]
    trail.close()
    leaf = merkle.leaf_hash(body.encode())
    db = sqlite3.connect(filled / "mantlet.db")
    with db:
        db.execute("UPDATE audit_records SET body=? WHERE seq=9", (body,))
        db.execute("UPDATE audit_nodes SET hash=? WHERE level=0 AND idx=9", (leaf,))
    db.close()
    code, report = cli_verify(filled)
    assert code == 1
    # The next record's back-link names the edited one's successor; the
    # tree node above it names the range; nothing verifies.
    assert report["first_bad"]["seq"] == 10  # type: ignore[index]
    assert any("node" in p["reason"] for p in report["problems"])  # type: ignore[attr-defined]


def test_delete_is_caught(filled: Path) -> None:
    sql(filled, "DELETE FROM audit_records WHERE seq=5")
    code, report = cli_verify(filled)
    assert code == 1
    assert report["first_bad"]["seq"] == 5  # type: ignore[index]
    assert "missing" in report["first_bad"]["reason"]  # type: ignore[index]


def test_insert_is_caught(filled: Path) -> None:
    sql(
        filled,
        "UPDATE audit_records SET seq = seq + 1000 WHERE seq >= 20",
        "UPDATE audit_records SET seq = seq - 999 WHERE seq >= 1000",
        "INSERT INTO audit_records (seq, tenant, body) VALUES (20, 't0', "
        '\'{"n":999,"prev":"00","seq":20,"type":"request"}\')',
    )
    code, report = cli_verify(filled)
    assert code == 1
    assert report["first_bad"]["seq"] == 20  # type: ignore[index]


def test_reorder_is_caught(filled: Path) -> None:
    sql(
        filled,
        "UPDATE audit_records SET seq = -1 WHERE seq = 11",
        "UPDATE audit_records SET seq = 11 WHERE seq = 12",
        "UPDATE audit_records SET seq = 12 WHERE seq = -1",
    )
    code, report = cli_verify(filled)
    assert code == 1
    assert report["first_bad"]["seq"] == 11  # type: ignore[index]
    assert "reordered" in report["first_bad"]["reason"]  # type: ignore[index]


def test_truncation_is_caught_even_with_the_head_rewound(filled: Path) -> None:
    trail = open_trail(filled)
    root30 = trail.log.root(30)
    trail.close()
    db = sqlite3.connect(filled / "mantlet.db")
    with db:
        db.execute("DELETE FROM audit_records WHERE seq >= 30")
        db.execute("UPDATE audit_head SET size=30, root=?", (root30,))
    db.close()
    code, report = cli_verify(filled)
    assert code == 1
    assert "truncated" in report["first_bad"]["reason"]  # type: ignore[index]


def test_a_witnessed_checkpoint_catches_a_rewritten_database(tmp_path: Path) -> None:
    trail = open_trail(tmp_path)
    for i in range(10):
        trail.append_sync({"n": i})
    note = trail.publish_checkpoint().note
    trail.close()
    witness = tmp_path / "witness.note"
    witness.write_text(note or "")
    # Someone deletes everything, the stored checkpoints included.
    sql(tmp_path, "DELETE FROM audit_records WHERE seq >= 5", "DELETE FROM audit_checkpoints")
    sql(tmp_path, "UPDATE audit_head SET size = 5")
    code, report = cli_verify(tmp_path, "--checkpoint", str(witness))
    assert code == 1
    assert any(
        "witnessed" in p["reason"] or "truncated" in p["reason"]  # type: ignore[attr-defined]
        for p in report["problems"]
    )  # type: ignore[attr-defined]


def test_proofs_verify_against_the_published_checkpoint(filled: Path) -> None:
    trail = open_trail(filled)
    checkpoint = Checkpoint.open(trail.log.latest_checkpoint() or "", trail.verifier)
    assert checkpoint.size == 40
    for index in (0, 13, 39):
        path = trail.log.inclusion_proof(index, checkpoint.size)
        leaf = trail.log.record(index).leaf_hash  # type: ignore[union-attr]
        merkle.verify_inclusion(index, checkpoint.size, leaf, path, checkpoint.root)
    for i in range(40, 55):
        trail.append_sync({"n": i})
    later = trail.publish_checkpoint()
    proof = trail.log.consistency_proof(checkpoint.size, later.size)
    merkle.verify_consistency(checkpoint.size, later.size, checkpoint.root, later.root, proof)
    result = runner.invoke(
        app,
        ["audit", "proof", "--data-dir", str(filled), "--index", "13", "--size", "40", "--json"],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["root"] == checkpoint.root.hex()
    trail.close()


def test_signed_notes_follow_c2sp_and_reject_forgery() -> None:
    key = SigningKey.generate()
    signer = NoteSigner("example.com/log", key.private)
    body = Checkpoint("example.com/log", 3, merkle.leaf_hash(b"x")).body()
    note = signer.sign(body)
    assert note.startswith(body + "\n\u2014 example.com/log ")
    verifier = NoteVerifier(signer.verifier_key)
    assert Checkpoint.open(note, verifier).size == 3
    with pytest.raises(CheckpointError):
        Checkpoint.open(note.replace("\n3\n", "\n4\n"), verifier)
    other = NoteVerifier(NoteSigner("example.com/log", SigningKey.generate().private).verifier_key)
    with pytest.raises(CheckpointError):
        other.verify(note)
    with pytest.raises(CheckpointError):
        NoteVerifier(signer.verifier_key.replace("example.com/log", "evil.com/log"))


def test_export_and_tail(filled: Path) -> None:
    out = filled / "export.jsonl"
    result = runner.invoke(app, ["audit", "export", "--data-dir", str(filled), "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(40))
    result = runner.invoke(app, ["audit", "tail", "--data-dir", str(filled), "-n", "3", "--json"])
    assert [r["seq"] for r in json.loads(result.stdout)] == [37, 38, 39]


WRITER = """
import sys
from mantlet.gateway.accountability import Accountability
from mantlet.gateway.settings import GatewaySettings
trail = Accountability.open(GatewaySettings(data_dir=sys.argv[1]))
i = 0
while True:
    seq = trail.append_sync({"type": "request", "n": i, "pad": "x" * 200})
    sys.stdout.write(f"{seq}\\n")
    sys.stdout.flush()
    i += 1
"""


def test_kill_9_during_appends_loses_nothing_acknowledged(tmp_path: Path) -> None:
    open_trail(tmp_path).close()  # create keys and schema first
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    acknowledged: list[int] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            acknowledged.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    acknowledged.extend(int(x) for x in proc.stdout.read().split())
    proc.stdout.close()
    assert len(acknowledged) >= 300
    trail = open_trail(tmp_path)
    report = verify_log(trail.log, trail.verifier)
    assert report.ok, report.problems
    assert report.records >= max(acknowledged) + 1
    stored = {r.seq for r in trail.log.records()}
    assert set(acknowledged) <= stored
    trail.append_sync({"n": "after restart"})
    assert verify_log(trail.log, trail.verifier).ok
    trail.close()


def _autocheckpoint(log: object) -> int:
    with log.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def test_background_wal_leaves_folding_to_its_owner(tmp_path: Path) -> None:
    """A gateway's appends never stall on folding the write-ahead log (SQLite
    would do it inside whichever commit crosses 1,000 pages); ``checkpoint_wal``
    does it when called, and other users keep SQLite's automatic folding."""
    from mantlet.audit.store import AuditLog

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = AuditLog(url, background_wal=True)
    assert _autocheckpoint(log) == 0
    for i in range(50):
        log.append({"v": 1, "type": "test", "i": i})
    frames, folded = log.checkpoint_wal()
    assert frames > 0 and folded == frames
    assert log.checkpoint_wal() == (frames, frames)  # nothing new to fold
    log.append({"v": 1, "type": "test", "i": 50})
    assert log.head().size == 51
    log.close()
    default = AuditLog(url)
    assert _autocheckpoint(default) == 1000
    default.close()


def test_a_running_gateway_folds_the_audit_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from mantlet.gateway import app as gateway_app
    from mantlet.gateway import create_app

    monkeypatch.setattr(gateway_app, "_WAL_CHECKPOINT_S", 0.05)
    folded: list[tuple[int, int]] = []
    settings = GatewaySettings.model_validate({"data_dir": str(tmp_path / "state")})
    app = create_app(settings)
    trail = app.state.gateway.trail
    original = trail.log.checkpoint_wal

    def spy() -> tuple[int, int]:
        result = original()
        folded.append(result)
        return result

    monkeypatch.setattr(trail.log, "checkpoint_wal", spy)
    with TestClient(app) as client:
        assert _autocheckpoint(trail.log) == 0
        client.get("/healthz")
        deadline = time.monotonic() + 5
        while not folded and time.monotonic() < deadline:
            time.sleep(0.05)
    assert folded and folded[-1][0] == folded[-1][1]


def test_a_failing_wal_fold_is_logged_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from mantlet.gateway import app as gateway_app
    from mantlet.gateway import create_app

    monkeypatch.setattr(gateway_app, "_WAL_CHECKPOINT_S", 0.02)
    calls: list[int] = []
    app = create_app(GatewaySettings.model_validate({"data_dir": str(tmp_path / "state")}))

    def broken() -> tuple[int, int]:
        calls.append(1)
        raise OSError("disk full at /secret/path")

    monkeypatch.setattr(app.state.gateway.trail.log, "checkpoint_wal", broken)
    with caplog.at_level("WARNING", logger="mantlet.gateway.app"), TestClient(app) as client:
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/healthz").status_code == 200
    assert len(calls) >= 2  # retried
    messages = [r.getMessage() for r in caplog.records if "WAL" in r.getMessage()]
    assert messages and all("OSError" in m and "/secret" not in m for m in messages)


async def test_an_inline_append_writes_on_the_callers_thread_and_fails_closed(
    tmp_path: Path,
) -> None:
    trail = open_trail(tmp_path)
    threads: list[str] = []

    def note_thread(conn: object, seq: int) -> None:
        threads.append(threading.current_thread().name)

    first = await trail.append({"type": "request", "n": 0}, note_thread, inline=True)
    # Concurrent appends still go through the group committer's thread.
    batched = await asyncio.gather(
        *(trail.append({"type": "request", "n": i}, note_thread) for i in (1, 2))
    )
    caller = threading.current_thread().name
    assert first == 0 and sorted(batched) == [1, 2]
    assert threads[0] == caller and caller not in threads[1:]

    def broken(conn: object, seq: int) -> None:
        raise OSError("disk full")

    with pytest.raises(AuditUnavailable):
        await trail.append({"type": "request", "n": 3}, broken, inline=True)
    assert trail.log.head().size == 3  # the failed record was rolled back, not half-written
    trail.close()
    code, report = cli_verify(tmp_path)
    assert code == 0 and report["records"] == 3
