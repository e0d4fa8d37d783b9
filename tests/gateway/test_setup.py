"""First start, settings files and the `mantlet keys` commands."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from mantlet.cli.app import app
from mantlet.errors import ConfigError
from mantlet.gateway.app import bootstrap_admin_key, server_secret
from mantlet.gateway.keys import KeyStore
from mantlet.gateway.settings import load_settings

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_server_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = server_secret(data)
    assert len(first) == 32
    assert stat.S_IMODE((data / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert server_secret(data) == first


def test_bootstrap_admin_key_only_when_no_key_exists() -> None:
    store = KeyStore("sqlite://", b"k" * 32)
    key = bootstrap_admin_key(store)
    assert key is not None
    assert store.verify(key).role == "admin"
    assert bootstrap_admin_key(store) is None
    store.close()


def test_example_settings_load() -> None:
    settings = load_settings(EXAMPLES / "gateway.yaml")
    assert [r.model for r in settings.routes] == ["smollm2", "echo", "gpt-4o-mini", "openai/*"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("port: 99999\n", "port"),
        ("routes: [{model: m, upstreams: [missing]}]\n", "unknown upstream"),
        ("upstreams: [{name: x, kind: carrier-pigeon}]\n", "kind"),
        ("surprise: 1\n", "surprise"),
        ("port: [\n", "not valid YAML at line 2"),
        ("privacy: {ner: xx}\n", "privacy.ner: .*unknown NER backend 'xx'"),
    ],
)
def test_bad_settings_name_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_settings(path)


def test_keys_commands_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    created = runner.invoke(
        app, ["keys", "create", "--tenant", "acme", "--model", "echo", "--json", "-c", str(config)]
    )
    assert created.exit_code == 0, created.stderr
    info = json.loads(created.stdout)
    assert info["key"].startswith(f"mk-{info['key_id']}-")
    assert info["models"] == ["echo"]

    listed = runner.invoke(app, ["keys", "list", "--json", "-c", str(config)])
    rows = json.loads(listed.stdout)
    assert [r["key_id"] for r in rows] == [info["key_id"]]
    assert info["key"].split("-")[-1] not in listed.stdout  # the secret never shows again

    rotated = runner.invoke(app, ["keys", "rotate", info["key_id"], "--json", "-c", str(config)])
    new = json.loads(rotated.stdout)
    assert new["key_id"] != info["key_id"]
    revoked = runner.invoke(app, ["keys", "revoke", new["key_id"], "-c", str(config)])
    assert revoked.exit_code == 0

    store = KeyStore(
        f"sqlite:///{tmp_path / 'data' / 'mantlet.db'}", server_secret(tmp_path / "data")
    )
    assert all(r.revoked_at is not None for r in store.list())
    store.close()

    missing = runner.invoke(app, ["keys", "revoke", "nosuchkey0", "-c", str(config)])
    assert missing.exit_code == 2


def test_data_dir_option_and_environment_overrides(tmp_path: Path) -> None:
    data = tmp_path / "state"
    created = runner.invoke(
        app, ["keys", "create", "--data-dir", str(data), "--tenant", "t", "--role", "app", "--json"]
    )
    assert created.exit_code == 0, created.stderr
    assert json.loads(created.stdout)["key"].startswith("mk-")
    assert (data / "server.key").is_file()
    settings = load_settings(None, environ={"MANTLET_PORT": "9999", "MANTLET_POLICY": "strict"})
    assert (settings.port, settings.policy) == (9999, "strict")
    overridden = load_settings(None, environ={"MANTLET_PORT": "9999"}, overrides={"port": 7})
    assert overridden.port == 7
    with pytest.raises(ConfigError, match="port"):
        load_settings(None, environ={"MANTLET_PORT": "not-a-port"})


def test_serve_with_several_workers_shares_one_state(
    tmp_path: Path, replicas: Any, cli_process: Any
) -> None:
    """`mantlet serve --workers 2`: uvicorn worker processes built from the
    same settings, one key store and one audit log between them."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "state"),
                "upstreams": [{"name": "echo", "kind": "echo"}],
                "routes": [{"model": "echo", "upstreams": ["echo"]}],
                "audit": {"checkpoint_interval_s": 0},
            }
        )
    )
    key = json.loads(cli_process("keys", "create", "--config", str(config), "--json"))["key"]

    def started_workers() -> int:
        lines = cli_process("audit", "export", "--config", str(config)).splitlines()
        records = [json.loads(line)["record"] for line in lines]
        return sum(1 for r in records if r.get("action") == "config.loaded")

    with replicas(config, 1, "--workers", "2") as (url,):
        deadline = time.monotonic() + 60
        while started_workers() < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert started_workers() == 2  # each worker records its start
        statuses = {
            httpx.post(
                f"{url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "echo", "messages": [{"role": "user", "content": f"hi {i}"}]},
                timeout=30,
            ).status_code
            for i in range(20)
        }
    assert statuses == {200}
    report = json.loads(cli_process("audit", "verify", "--config", str(config), "--json"))
    assert report["ok"] is True
    assert report["records"] >= 22  # two starts, one key, twenty answers
