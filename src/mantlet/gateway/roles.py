"""Roles as data: which permissions each role holds.

Three roles ship (``admin``, ``auditor``, ``app``); the settings' ``roles:``
adds custom ones, each a list of the permissions below, e.g. a ``reviewer``
with ``[models, audit:read]``. Every route names the permission it needs, and
a key or token whose role is unknown holds none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["BUILTIN_ROLES", "PERMISSIONS", "role_table"]

PERMISSIONS: Mapping[str, str] = {
    "chat": "generate: chat, responses, completions, embeddings",
    "models": "list models",
    "scan": "ask for a guard verdict on text or messages (/v1/scan)",
    "keys:manage": "create, list, revoke, rotate keys and enrol second factors",
    "audit:read": "read the audit log and proofs of one's own tenant",
    "audit:all-tenants": "read every tenant's audit records",
    "audit:checkpoint": "publish a signed checkpoint",
    "watermark:detect": "check text for the tenant's watermark",
}

BUILTIN_ROLES: Mapping[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS),
    "auditor": frozenset({"models", "audit:read", "watermark:detect"}),
    "app": frozenset({"chat", "models", "scan"}),
}


def role_table(custom: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """The built-in roles plus ``custom`` (validated by the settings)."""
    return {**BUILTIN_ROLES, **{name: frozenset(perms) for name, perms in custom.items()}}
