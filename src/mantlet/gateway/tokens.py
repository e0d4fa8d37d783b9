"""OIDC / JWT bearer tokens, verified against a configured JWKS.

An identity provider's access token is accepted when its signature verifies
with a key from the JWKS (only the configured algorithms: never ``none``, never
an HMAC algorithm with a public key), and its issuer, audience and expiry are
right. Tenant and role come from configured claims, so the same RBAC applies
as for API keys. joserfc does the cryptography; this module only maps
settings and errors.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from mantlet.gateway.keys import AuthError, Principal
from mantlet.gateway.settings import OIDCSettings

_REFRESH_S = 600.0


# RFC 8176 authentication method references that prove a second factor.
_SECOND_FACTORS = frozenset({"mfa", "otp", "hwk", "swk"})


class TokenVerifier:
    def __init__(
        self,
        settings: OIDCSettings,
        *,
        clock: Callable[[], float] = time.time,
        http: httpx.Client | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._http = http
        self._keys: KeySet | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        settings = self._settings
        try:
            decoded = jwt.decode(token, self._key_set(), algorithms=settings.algorithms)
            registry = jwt.JWTClaimsRegistry(
                now=lambda: int(self._clock()),
                leeway=settings.leeway_s,
                iss={"essential": True, "value": settings.issuer},
                aud={"essential": True, "value": settings.audience},
                exp={"essential": True},
                sub={"essential": True},
            )
            registry.validate(decoded.claims)
        except ExpiredTokenError:
            raise AuthError("token expired") from None
        except (JoseError, ValueError, TypeError):
            raise AuthError("invalid token") from None
        claims = decoded.claims
        tenant, role = claims.get(settings.tenant_claim), claims.get(settings.role_claim)
        if not isinstance(tenant, str) or not tenant or not isinstance(role, str) or not role:
            raise AuthError("token lacks the tenant or role claim")
        methods = claims.get("amr")
        second_factor = isinstance(methods, list) and any(
            isinstance(m, str) and m in _SECOND_FACTORS for m in methods
        )
        return Principal(
            key_id=f"oidc:{claims['sub']}",
            tenant=tenant,
            role=role,
            models=None,
            mfa=second_factor,
        )

    def _key_set(self) -> KeySet:
        with self._lock:
            stale = self._clock() - self._loaded_at > _REFRESH_S
            if self._keys is None or (self._settings.jwks_url and stale):
                self._keys = KeySet.import_key_set(self._load_jwks())
                self._loaded_at = self._clock()
            return self._keys

    def _load_jwks(self) -> Any:
        settings = self._settings
        if settings.jwks_file is not None:
            return json.loads(settings.jwks_file.read_text("utf-8"))
        assert settings.jwks_url is not None
        client = self._http or httpx.Client(timeout=10.0)
        try:
            response = client.get(settings.jwks_url)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError):
            raise AuthError("identity provider keys unavailable") from None
