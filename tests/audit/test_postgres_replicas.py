"""Two gateway processes on one real PostgreSQL (started by .ci/run) append
to one audit log concurrently: one gap-free, verifiable sequence results."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from mantlet.audit import verify_log
from mantlet.gateway.accountability import Accountability
from mantlet.gateway.settings import load_settings

POSTGRES = os.environ.get("MANTLET_TEST_POSTGRES_URL")
REQUIRED = os.environ.get("MANTLET_REQUIRE_SERVICES") == "1"
CLI = "from mantlet.cli.app import main; main()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_database(url: str) -> str:
    """A new database per run, so the log starts empty."""
    name = f"audit_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gateway did not become ready")


def test_two_gateways_share_one_gap_free_log(tmp_path: Path) -> None:
    if not POSTGRES:
        if REQUIRED:
            pytest.fail("MANTLET_TEST_POSTGRES_URL missing although MANTLET_REQUIRE_SERVICES=1")
        pytest.skip("postgres not available (set MANTLET_TEST_POSTGRES_URL; .ci/run does)")
    url = fresh_database(POSTGRES)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "state"),
                "database_url": url,
                "policy": "permissive",
                "upstreams": [{"name": "echo", "kind": "echo"}],
                "routes": [{"model": "echo", "upstreams": ["echo"]}],
                "quotas": {"requests_per_key": None},
                "audit": {"checkpoint_interval_s": 0.5},
            }
        )
    )
    created = subprocess.run(
        [sys.executable, "-c", CLI, "keys", "create", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["key"]
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLI, "serve", "--config", str(config), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(port, proc)

        def hit(i: int) -> int:
            port = ports[i % 2]
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "echo", "messages": [{"role": "user", "content": f"hi {i}"}]},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            return int(response.headers["x-mantlet-audit-index"])

        with ThreadPoolExecutor(max_workers=16) as pool:
            indices = list(pool.map(hit, range(200)))
        assert len(set(indices)) == 200  # no two requests got the same index
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)

    trail = Accountability.open(load_settings(config))
    try:
        report = verify_log(trail.log, trail.verifier)
        assert report.ok, report.problems
        assert report.checkpoints_checked >= 2  # both replicas published
        seqs = [r.seq for r in trail.log.records()]
        assert seqs == list(range(len(seqs)))
        # 200 answers, 2 start-up records, 1 key creation from the CLI.
        assert len(seqs) == 203
        assert set(indices) <= set(seqs)
    finally:
        trail.close()
