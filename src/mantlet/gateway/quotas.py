"""Request-rate limits and token budgets per key and per tenant
(availability pillar).

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


def _items(rules: str | list[str] | None) -> list[RateLimitItem]:
    """One rule ("60/minute") or several ("20000/minute", "500000/day")."""
    if rules is None:
        return []
    return [parse(rule) for rule in ([rules] if isinstance(rules, str) else rules)]


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
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._default = parse(requests) if requests else None
        self._by_role = {role: parse(rule) for role, rule in (requests_by_role or {}).items()}
        self._tenant_requests = _items(tenant_requests)
        # Token windows: (scope, item); a request is refused while any is spent.
        self._tokens = [("tenant", item) for item in _items(tenant_tokens)] + [
            ("key", item) for item in _items(key_tokens)
        ]
        self._concurrent = concurrent
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _identity(scope: str, principal: Principal) -> str:
        return principal.tenant if scope == "tenant" else principal.key_id

    def admit(self, principal: Principal) -> None:
        """Count one request for the key and tenant; refuse it when over a
        request limit or while a token budget is spent."""
        item = self._by_role.get(principal.role, self._default)
        if item is not None and not self._limiter.hit(item, "key", principal.key_id):
            raise self._refusal(
                item, "key", principal.key_id, message="rate limit reached for this key"
            )
        for item in self._tenant_requests:
            if not self._limiter.hit(item, "tenant-requests", principal.tenant):
                raise self._refusal(
                    item,
                    "tenant-requests",
                    principal.tenant,
                    message="rate limit reached for this tenant",
                )
        for scope, item in self._tokens:
            who = self._identity(scope, principal)
            if not self._limiter.test(item, scope, who):
                raise self._refusal(
                    item, scope, who, message=f"token budget of this {scope} is spent"
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
        """Count the tokens a finished request used against every token window."""
        if tokens <= 0:
            return
        for scope, item in self._tokens:
            who = self._identity(scope, principal)
            if self._limiter.hit(item, scope, who, cost=min(tokens, item.amount)):
                continue
            # `limits` refuses a cost larger than what is left; the request
            # already ran, so it spends the rest of the window instead.
            left = self._limiter.get_window_stats(item, scope, who).remaining
            if left > 0:
                self._limiter.hit(item, scope, who, cost=left)

    def _refusal(self, item: RateLimitItem, *identifiers: str, message: str) -> GatewayError:
        reset = self._limiter.get_window_stats(item, *identifiers).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        return GatewayError(
            429, message, "rate_limit_exceeded", headers={"Retry-After": str(retry_after)}
        )
