"""The gateway's canary pool hands out fresh canaries whose matchers are
already compiled, so checking an answer only looks the matcher up."""

from __future__ import annotations

import asyncio

import pytest

from mantlet.detectors import canary as canaries
from mantlet.gateway.canary_pool import CanaryPool


async def _filled(pool: CanaryPool, size: int) -> None:
    for _ in range(500):
        if pool.ready >= size:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the pool did not fill")


@pytest.mark.asyncio
async def test_pooled_canaries_are_fresh_and_compiled_ahead() -> None:
    pool = CanaryPool(size=3)
    first = pool.take()  # empty pool: made on the spot
    await _filled(pool, 3)
    taken = [pool.take() for _ in range(3)]
    assert len({first, *taken}) == 4  # never handed out twice
    before = canaries._matchers.cache_info()
    for canary in taken:
        canaries.prepare([canary])
    after = canaries._matchers.cache_info()
    assert after.misses == before.misses  # all three were compiled already
    assert after.hits == before.hits + 3
    await pool.aclose()
