"""Two gateway processes on one real PostgreSQL (started by .ci/run) append
to one audit log concurrently: one gap-free, verifiable sequence results."""

from __future__ import annotations

import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mantlet.audit import verify_log
from mantlet.gateway.accountability import Accountability
from mantlet.gateway.settings import load_settings

POSTGRES = os.environ.get("MANTLET_TEST_POSTGRES_URL")
REQUIRED = os.environ.get("MANTLET_REQUIRE_SERVICES") == "1"


def fresh_database(url: str) -> str:
    """A new database per run, so the log starts empty."""
    name = f"audit_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


def test_two_gateways_share_one_gap_free_log(
    tmp_path: Path, replicas: Any, cli_process: Any
) -> None:
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
    key = json.loads(cli_process("keys", "create", "--config", str(config), "--json"))["key"]
    with replicas(config, 2) as urls:

        def hit(i: int) -> int:
            response = httpx.post(
                f"{urls[i % 2]}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "echo", "messages": [{"role": "user", "content": f"hi {i}"}]},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            return int(response.headers["x-mantlet-audit-index"])

        with ThreadPoolExecutor(max_workers=16) as pool:
            indices = list(pool.map(hit, range(200)))
        assert len(set(indices)) == 200  # no two requests got the same index

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


async def test_appends_to_postgres_never_run_on_the_event_loop(tmp_path: Path) -> None:
    # ``inline`` is only for SQLite: a network database that stalls must not
    # stall the gateway's event loop with it.
    if not POSTGRES:
        if REQUIRED:
            pytest.fail("MANTLET_TEST_POSTGRES_URL missing although MANTLET_REQUIRE_SERVICES=1")
        pytest.skip("postgres not available (set MANTLET_TEST_POSTGRES_URL; .ci/run does)")
    config = tmp_path / "gateway.yaml"
    state = str(tmp_path / "state")
    config.write_text(json.dumps({"data_dir": state, "database_url": fresh_database(POSTGRES)}))
    trail = Accountability.open(load_settings(config))
    threads: list[str] = []
    try:
        seq = await trail.append(
            {"type": "request"},
            lambda conn, seq: threads.append(threading.current_thread().name),
            inline=True,
        )
        assert seq == 0
        assert threads and threads[0] != threading.current_thread().name
    finally:
        trail.close()
