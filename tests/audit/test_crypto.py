"""Confidentiality at rest: master-key providers, tenant data keys with
crypto-shredding and re-wrapping, and chunked file encryption."""

from __future__ import annotations

import base64
import io
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mantlet.audit import verify_log
from mantlet.cli.app import app
from mantlet.crypto.filecrypt import FileCryptError, decrypt_stream, encrypt_stream
from mantlet.crypto.keyproviders import (
    EnvKeyProvider,
    FileKeyProvider,
    KeyProviderError,
    StaticKeyProvider,
)
from mantlet.crypto.tenant_keys import TenantErased
from mantlet.gateway.accountability import Accountability
from mantlet.gateway.settings import GatewaySettings

runner = CliRunner()


def trail_for(data_dir: Path, *, payloads: bool = True) -> Accountability:
    settings = GatewaySettings(data_dir=data_dir, audit={"store_payloads": payloads})
    return Accountability.open(settings)


def test_key_files_are_private(tmp_path: Path) -> None:
    trail_for(tmp_path).close()
    for name in ("master.keys", "signing.key"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, (name, oct(mode))


def test_crypto_shredding_leaves_the_log_verifiable(tmp_path: Path) -> None:
    trail = trail_for(tmp_path)
    seqs = {}
    for tenant in ("acme", "globex"):
        secret_prompt = f"{tenant} quarterly numbers".encode()
        write = trail.payload_writer(tenant, {"request": secret_prompt.decode()})
        assert write is not None
        seqs[tenant] = trail.log.append_many(
            [{"type": "request", "tenant": tenant}], after=lambda conn, s, w=write: w(conn, s[0])
        )[0]
    trail.publish_checkpoint()
    assert b"acme quarterly" in trail.payloads.read(seqs["acme"])[1]  # type: ignore[index]
    raw = (tmp_path / "mantlet.db").read_bytes()
    assert b"quarterly numbers" not in raw  # encrypted at rest
    trail.close()

    result = runner.invoke(
        app, ["tenant", "erase", "--tenant", "acme", "--yes", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output

    trail = trail_for(tmp_path)
    with pytest.raises(TenantErased):
        trail.payloads.read(seqs["acme"])
    assert b"globex" in trail.payloads.read(seqs["globex"])[1]  # type: ignore[index]
    # A new payload for the erased tenant cannot silently get a fresh key.
    with pytest.raises(TenantErased):
        trail.keyring.data_key("acme")
    report = verify_log(trail.log, trail.verifier)
    assert report.ok, report.problems
    last = list(trail.log.records())[-1]
    assert '"action":"tenant.erase"' in last.body
    trail.close()
    result = runner.invoke(
        app, ["audit", "payload", str(seqs["acme"]), "--data-dir", str(tmp_path)]
    )
    assert result.exit_code != 0


def test_master_rotation_rewraps_without_touching_payloads(tmp_path: Path) -> None:
    trail = trail_for(tmp_path)
    write = trail.payload_writer("acme", {"request": "hello"})
    assert write is not None
    seq = trail.log.append_many([{"tenant": "acme"}], after=lambda c, s: write(c, s[0]))[0]
    before = trail.keyring.status()[0]["master_key_id"]
    trail.close()
    result = runner.invoke(app, ["tenant", "rotate-master", "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    trail = trail_for(tmp_path)
    after = trail.keyring.status()[0]["master_key_id"]
    assert after != before and after == trail.keyring.provider.current_key_id
    assert trail.payloads.read(seq)[1] == b'{"request":"hello"}'  # type: ignore[index]
    trail.close()


def test_key_providers() -> None:
    key = os.urandom(32)
    env = EnvKeyProvider({"MANTLET_MASTER_KEYS": f"k2:{base64.b64encode(key).decode()}"})
    key_id, blob = env.wrap(b"data key", b"aad")
    assert key_id == "k2" and env.unwrap(key_id, blob, b"aad") == b"data key"
    with pytest.raises(KeyProviderError):
        env.unwrap(key_id, blob, b"other tenant")
    with pytest.raises(KeyProviderError):
        StaticKeyProvider({"k9": os.urandom(32)}, "k9").unwrap(key_id, blob, b"aad")
    with pytest.raises(KeyProviderError):
        EnvKeyProvider({})
    with pytest.raises(KeyProviderError):
        EnvKeyProvider({"MANTLET_MASTER_KEYS": "nocolon"})


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096, 50_000])
def test_file_encryption_round_trips(size: int, tmp_path: Path) -> None:
    provider = FileKeyProvider(tmp_path / "master.keys")
    plain = os.urandom(size)
    sealed = io.BytesIO()
    assert encrypt_stream(io.BytesIO(plain), sealed, provider, chunk_size=4096) == size
    assert size < 64 or plain[:64] not in sealed.getvalue()
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(sealed.getvalue()), out, provider)
    assert out.getvalue() == plain


def _sealed(provider: FileKeyProvider, size: int = 20_000) -> tuple[bytes, int]:
    sealed = io.BytesIO()
    encrypt_stream(io.BytesIO(os.urandom(size)), sealed, provider, chunk_size=4096)
    data = sealed.getvalue()
    header = len(data) - (size // 4096 + 1) * 16 - size
    return data, header


def test_file_tampering_is_detected(tmp_path: Path) -> None:
    provider = FileKeyProvider(tmp_path / "master.keys")
    data, header = _sealed(provider)
    chunk = 4096 + 16
    chunks = [data[header + i : header + i + chunk] for i in range(0, len(data) - header, chunk)]
    variants = {
        "flipped byte": data[:-100] + bytes([data[-100] ^ 1]) + data[-99:],
        "truncated at chunk boundary": data[: header + 2 * chunk],
        "truncated mid-chunk": data[:-10],
        "reordered": data[:header] + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "dropped chunk": data[:header] + chunks[0] + b"".join(chunks[2:]),
        "appended": data + chunks[-1],
        "header changed": data[: header - 1] + bytes([data[header - 1] ^ 1]) + data[header:],
    }
    for name, variant in variants.items():
        with pytest.raises(FileCryptError):
            decrypt_stream(io.BytesIO(variant), io.BytesIO(), provider)
        assert name  # each variant is refused
    other = FileKeyProvider(tmp_path / "other.keys")
    with pytest.raises(KeyProviderError):
        decrypt_stream(io.BytesIO(data), io.BytesIO(), other)


def test_encrypt_decrypt_cli(tmp_path: Path) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(b"name,email\n" * 5000)
    sealed, restored = tmp_path / "data.csv.enc", tmp_path / "restored.csv"
    args = ["--data-dir", str(tmp_path / "state")]
    assert runner.invoke(app, ["encrypt", str(source), str(sealed), *args]).exit_code == 0
    assert runner.invoke(app, ["decrypt", str(sealed), str(restored), *args]).exit_code == 0
    assert restored.read_bytes() == source.read_bytes()
    broken = tmp_path / "broken.enc"
    broken.write_bytes(sealed.read_bytes()[:-5])
    result = runner.invoke(app, ["decrypt", str(broken), str(tmp_path / "out.csv"), *args])
    assert result.exit_code != 0
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "out.csv.partial").exists()
