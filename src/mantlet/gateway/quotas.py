"""Rate limits per key and token budgets per tenant (availability pillar).

Built on the ``limits`` library: moving windows in memory by default, or in
Redis (``storage_uri: redis://...``) so that several gateway replicas share
one count. A request over its limit, or from a tenant whose token budget is
spent, gets a 429 in OpenAI's shape with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from mantlet.gateway.errors import GatewayError
from mantlet.gateway.keys import Principal


class Quotas:
    def __init__(
        self,
        *,
        storage_uri: str = "memory://",
        requests: str | None = None,
        requests_by_role: dict[str, str] | None = None,
        tenant_tokens: str | None = None,
        concurrent: int | None = None,
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._default = parse(requests) if requests else None
        self._by_role = {role: parse(rule) for role, rule in (requests_by_role or {}).items()}
        self._tokens = parse(tenant_tokens) if tenant_tokens else None
        self._concurrent = concurrent
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, principal: Principal) -> None:
        """Count one request for the key; refuse it when over the limit or budget."""
        item = self._by_role.get(principal.role, self._default)
        if item is not None and not self._limiter.hit(item, "key", principal.key_id):
            raise self._refusal(
                item, "key", principal.key_id, message="rate limit reached for this key"
            )
        tokens = self._tokens
        if tokens is not None and not self._limiter.test(tokens, "tenant", principal.tenant):
            raise self._refusal(
                tokens, "tenant", principal.tenant, message="token budget of this tenant is spent"
            )

    def enter(self, principal: Principal) -> None:
        """Count one in-flight request for the key; pair with ``leave``.

        Counted per process: across replicas the request-rate limit (shared in
        Redis) is the bound; this one protects each process from one key."""
        if self._concurrent is None:
            return
        with self._lock:
            current = self._in_flight.get(principal.key_id, 0)
            if current >= self._concurrent:
                raise GatewayError(
                    429,
                    f"more than {self._concurrent} concurrent requests for this key",
                    "rate_limit_exceeded",
                    headers={"Retry-After": "1"},
                )
            self._in_flight[principal.key_id] = current + 1

    def leave(self, principal: Principal) -> None:
        if self._concurrent is None:
            return
        with self._lock:
            remaining = self._in_flight.get(principal.key_id, 1) - 1
            if remaining > 0:
                self._in_flight[principal.key_id] = remaining
            else:
                self._in_flight.pop(principal.key_id, None)

    def charge(self, principal: Principal, tokens: int) -> None:
        """Count the tokens a finished request used against the tenant's budget."""
        item = self._tokens
        if item is None or tokens <= 0:
            return
        if self._limiter.hit(item, "tenant", principal.tenant, cost=min(tokens, item.amount)):
            return
        # `limits` refuses a cost larger than what is left; the request already
        # ran, so it spends the rest of the budget instead.
        left = self._limiter.get_window_stats(item, "tenant", principal.tenant).remaining
        if left > 0:
            self._limiter.hit(item, "tenant", principal.tenant, cost=left)

    def _refusal(self, item: RateLimitItem, *identifiers: str, message: str) -> GatewayError:
        reset = self._limiter.get_window_stats(item, *identifiers).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        return GatewayError(
            429, message, "rate_limit_exceeded", headers={"Retry-After": str(retry_after)}
        )
