"""Request-rate limits and token budgets per key and per tenant
(availability pillar).

Built on the ``limits`` library's asyncio API: moving windows in memory by
default, or in Redis (``storage_uri: redis://...``) so that several gateway
replicas share one count. (The synchronous memory storage starts a timer
thread on every hit after a quiet spell, which cost up to milliseconds per
request on a busy 2-core machine; the asyncio one expires on the event loop.)
A request over its limit, or from a tenant whose token budget is spent, gets
a 429 in OpenAI's shape with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from mantlet.gateway.errors import GatewayError
from mantlet.gateway.keys import Principal


def async_storage(uri: str) -> tuple[Any, Any]:
    """The asyncio storage for a ``memory://`` or ``redis://`` style URI, and
    the Redis connection pool we own (None in memory) so that shutdown can
    close it. Redis goes through redis-py's asyncio client (``scale`` extra)."""
    plain = uri.removeprefix("async+")
    if plain.split("://", 1)[0] not in {"redis", "rediss", "redis+unix"}:
        return storage_from_string(f"async+{plain}"), None
    from redis.asyncio import ConnectionPool

    pool = ConnectionPool.from_url(plain.replace("redis+unix://", "unix://", 1))
    options: dict[str, Any] = {"implementation": "redispy", "connection_pool": pool}
    storage = storage_from_string(f"async+{plain}", **options)
    return storage, pool


def _items(rules: str | list[str] | None) -> list[RateLimitItem]:
    """One rule ("60/minute") or several ("20000/minute", "500000/day")."""
    if rules is None:
        return []
    return [parse(rule) for rule in ([rules] if isinstance(rules, str) else rules)]


class _Rules:
    """One set of limits: the gateway's, or a tenant's own."""

    def __init__(
        self,
        requests: str | None,
        requests_by_role: dict[str, str] | None,
        tenant_requests: str | list[str] | None,
        tenant_tokens: str | list[str] | None,
        key_tokens: str | list[str] | None,
        concurrent: int | None,
    ) -> None:
        self.default = parse(requests) if requests else None
        self.by_role = {role: parse(rule) for role, rule in (requests_by_role or {}).items()}
        self.tenant_requests = _items(tenant_requests)
        # Token windows: (scope, item); a request is refused while any is spent.
        self.tokens = [("tenant", item) for item in _items(tenant_tokens)] + [
            ("key", item) for item in _items(key_tokens)
        ]
        self.concurrent = concurrent


class Quotas:
    def __init__(
        self,
        *,
        storage_uri: str = "memory://",
        requests: str | None = None,
        requests_by_role: dict[str, str] | None = None,
        tenant_requests: str | list[str] | None = None,
        tenant_tokens: str | list[str] | None = None,
        key_tokens: str | list[str] | None = None,
        concurrent: int | None = None,
        tenants: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """``tenants``: per tenant, the settings above (``requests``,
        ``tenant_tokens``, ...) that differ from the gateway's."""
        storage, self._pool = async_storage(storage_uri)
        self._limiter = MovingWindowRateLimiter(storage)
        defaults: dict[str, Any] = {
            "requests": requests,
            "requests_by_role": requests_by_role,
            "tenant_requests": tenant_requests,
            "tenant_tokens": tenant_tokens,
            "key_tokens": key_tokens,
            "concurrent": concurrent,
        }
        self._rules = _Rules(**defaults)
        self._tenant_rules = {
            tenant: _Rules(**{**defaults, **overrides})
            for tenant, overrides in (tenants or {}).items()
        }
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def _for(self, principal: Principal) -> _Rules:
        return self._tenant_rules.get(principal.tenant, self._rules)

    @staticmethod
    def _identity(scope: str, principal: Principal) -> str:
        return principal.tenant if scope == "tenant" else principal.key_id

    async def admit(self, principal: Principal) -> None:
        """Count one request for the key and tenant; refuse it when over a
        request limit or while a token budget is spent."""
        rules = self._for(principal)
        item = rules.by_role.get(principal.role, rules.default)
        if item is not None and not await self._limiter.hit(item, "key", principal.key_id):
            raise await self._refusal(
                item, "key", principal.key_id, message="rate limit reached for this key"
            )
        for item in rules.tenant_requests:
            if not await self._limiter.hit(item, "tenant-requests", principal.tenant):
                raise await self._refusal(
                    item,
                    "tenant-requests",
                    principal.tenant,
                    message="rate limit reached for this tenant",
                )
        for scope, item in rules.tokens:
            who = self._identity(scope, principal)
            if not await self._limiter.test(item, scope, who):
                raise await self._refusal(
                    item, scope, who, message=f"token budget of this {scope} is spent"
                )

    def enter(self, principal: Principal) -> None:
        """Count one in-flight request for the key; pair with ``leave``.

        Counted per process: across replicas the request-rate limit (shared in
        Redis) is the bound; this one protects each process from one key."""
        limit = self._for(principal).concurrent
        if limit is None:
            return
        with self._lock:
            current = self._in_flight.get(principal.key_id, 0)
            if current >= limit:
                raise GatewayError(
                    429,
                    f"more than {limit} concurrent requests for this key",
                    "rate_limit_exceeded",
                    headers={"Retry-After": "1"},
                )
            self._in_flight[principal.key_id] = current + 1

    def leave(self, principal: Principal) -> None:
        if self._for(principal).concurrent is None:
            return
        with self._lock:
            remaining = self._in_flight.get(principal.key_id, 1) - 1
            if remaining > 0:
                self._in_flight[principal.key_id] = remaining
            else:
                self._in_flight.pop(principal.key_id, None)

    async def charge(self, principal: Principal, tokens: int) -> None:
        """Count the tokens a finished request used against every token window."""
        if tokens <= 0:
            return
        for scope, item in self._for(principal).tokens:
            who = self._identity(scope, principal)
            if await self._limiter.hit(item, scope, who, cost=min(tokens, item.amount)):
                continue
            # `limits` refuses a cost larger than what is left; the request
            # already ran, so it spends the rest of the window instead.
            left = (await self._limiter.get_window_stats(item, scope, who)).remaining
            if left > 0:
                await self._limiter.hit(item, scope, who, cost=left)

    async def aclose(self) -> None:
        """Closes the Redis connections (nothing to do in memory)."""
        if self._pool is not None:
            await self._pool.aclose()

    async def _refusal(self, item: RateLimitItem, *identifiers: str, message: str) -> GatewayError:
        reset = (await self._limiter.get_window_stats(item, *identifiers)).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        return GatewayError(
            429, message, "rate_limit_exceeded", headers={"Retry-After": str(retry_after)}
        )
