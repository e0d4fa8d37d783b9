"""The scale-out path for real: API keys in PostgreSQL and rate-limit counts in
Redis, shared by two gateway "replicas" (two store instances).

`.ci/run` starts both servers on loopback and exports their URLs with
MANTLET_REQUIRE_SERVICES=1, so in CI these tests cannot be skipped; elsewhere
they skip with the reason.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from mantlet.gateway.errors import GatewayError
from mantlet.gateway.keys import AuthError, KeyStore, Principal
from mantlet.gateway.quotas import Quotas

POSTGRES = os.environ.get("MANTLET_TEST_POSTGRES_URL")
REDIS = os.environ.get("MANTLET_TEST_REDIS_URL")
REQUIRED = os.environ.get("MANTLET_REQUIRE_SERVICES") == "1"
SECRET = b"p" * 32


def need(url: str | None, what: str) -> str:
    if url:
        return url
    if REQUIRED:
        pytest.fail(f"{what} URL missing although MANTLET_REQUIRE_SERVICES=1")
    pytest.skip(f"{what} not available (set MANTLET_TEST_{what.upper()}_URL; .ci/run does)")


def test_key_store_on_postgresql_is_shared_by_replicas() -> None:
    url = need(POSTGRES, "postgres")
    first, second = KeyStore(url, SECRET), KeyStore(url, SECRET)
    try:
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        key, info = first.create(tenant=tenant, role="app", models=["echo"])
        principal = second.verify(key)  # the other replica sees it at once
        assert (principal.tenant, principal.models) == (tenant, ("echo",))
        new_key, new_info = second.rotate(info.key_id)
        with pytest.raises(AuthError):
            first.verify(key)
        assert first.verify(new_key).key_id == new_info.key_id
        first.revoke(new_info.key_id)
        with pytest.raises(AuthError, match="revoked"):
            second.verify(new_key)
        listed = second.list(tenant=tenant)
        assert {i.key_id for i in listed} == {info.key_id, new_info.key_id}
        assert all(i.created_at.tzinfo is not None for i in listed)
    finally:
        first.close()
        second.close()


def test_second_factors_on_postgresql_survive_replicas_starting_together(
    start_together: Any,
) -> None:
    """Replicas starting at once on an empty database all create the
    second-factor table; the ones that lose the race must not crash, and an
    enrolment made through one is checked by the others."""
    import pyotp
    import sqlalchemy as sa

    from mantlet.gateway.mfa import MfaResult, TotpStore

    base = need(POSTGRES, "postgres")
    name = f"mfa_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    engines = [sa.create_engine(url) for _ in range(6)]
    stores, errors = start_together(len(engines), lambda i: TotpStore(engines[i], SECRET))
    try:
        assert errors == []
        uri = stores[0].enroll("adminkey01")
        secret = uri.split("secret=")[1].split("&")[0]
        assert stores[-1].check("adminkey01", pyotp.TOTP(secret).now()) is MfaResult.OK
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.asyncio
async def test_rate_limits_in_redis_are_shared_by_replicas() -> None:
    url = need(REDIS, "redis")
    principal = Principal(key_id=f"k{uuid.uuid4().hex[:9]}", tenant="t", role="app", models=None)
    replica_a = Quotas(storage_uri=url, requests="3/minute")
    replica_b = Quotas(storage_uri=url, requests="3/minute")
    await replica_a.admit(principal)
    await replica_b.admit(principal)
    await replica_a.admit(principal)
    with pytest.raises(GatewayError) as refused:
        await replica_b.admit(principal)
    assert refused.value.status == 429
    assert int(refused.value.headers["Retry-After"]) >= 1
    await replica_a.aclose()
    await replica_b.aclose()


@pytest.mark.asyncio
async def test_token_budget_in_redis_is_shared_by_replicas() -> None:
    url = need(REDIS, "redis")
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    principal = Principal(key_id="k", tenant=tenant, role="app", models=None)
    replica_a = Quotas(storage_uri=url, requests=None, tenant_tokens="100/day")
    replica_b = Quotas(storage_uri=url, requests=None, tenant_tokens="100/day")
    await replica_a.admit(principal)
    await replica_a.charge(principal, 60)
    await replica_b.admit(principal)
    await replica_b.charge(principal, 60)
    with pytest.raises(GatewayError):
        await replica_a.admit(principal)
    await replica_a.aclose()
    await replica_b.aclose()


def test_two_gateway_processes_share_one_redis_limit(
    tmp_path: Path, replicas: Any, cli_process: Any
) -> None:
    url = need(REDIS, "redis")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "state"),
                "policy": "permissive",
                "upstreams": [{"name": "echo", "kind": "echo"}],
                "routes": [{"model": "echo", "upstreams": ["echo"]}],
                "quotas": {"storage_uri": url, "requests_per_key": "5/minute"},
                "audit": {"checkpoint_interval_s": 0},
            }
        )
    )
    key = json.loads(cli_process("keys", "create", "--config", str(config), "--json"))["key"]
    with replicas(config, 2) as urls:
        statuses = [
            httpx.post(
                f"{urls[i % 2]}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            ).status_code
            for i in range(10)
        ]
    assert statuses.count(200) == 5, statuses  # one limit across both processes
    assert statuses.count(429) == 5, statuses
