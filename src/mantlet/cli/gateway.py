"""``mantlet serve`` and ``mantlet keys``: run the gateway and manage its API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mantlet.cli._common import guarded, print_json, stderr, stdout

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Gateway settings YAML (default: embedded).")
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="State directory (default .mantlet).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]

keys_app = typer.Typer(
    help="Create, list, revoke and rotate gateway API keys; enrol admins for a second factor.",
    no_args_is_help=True,
)


def open_accountability(config: Path | None, data_dir: Path | None) -> Any:
    """The audit log, keys and signer of a gateway's data directory."""
    from mantlet.gateway.accountability import Accountability
    from mantlet.gateway.settings import load_settings

    return Accountability.open(load_settings(config, overrides={"data_dir": data_dir}))


def _record_admin(config: Path | None, data_dir: Path | None, action: dict[str, Any]) -> None:
    """Admin actions from the CLI land in the audit log like API ones."""
    open_accountability(config, data_dir).append_sync(
        {"v": 1, "type": "admin", "via": "cli", **action}
    )


def _store_and_secret(config: Path | None, data_dir: Path | None) -> tuple[Any, bytes]:
    from mantlet.gateway.app import server_secret
    from mantlet.gateway.keys import KeyStore
    from mantlet.gateway.settings import load_settings

    settings = load_settings(config, overrides={"data_dir": data_dir})
    secret = server_secret(settings.data_dir)
    return KeyStore(settings.resolved_database_url, secret), secret


def _store(config: Path | None, data_dir: Path | None) -> Any:
    return _store_and_secret(config, data_dir)[0]


def _stores(config: Path | None, data_dir: Path | None) -> tuple[Any, Any]:
    """The key store and the second-factor store beside it (one settings
    load, one server secret)."""
    from mantlet.gateway.mfa import TotpStore

    keys, secret = _store_and_secret(config, data_dir)
    return keys, TotpStore(keys.engine, secret)


@guarded
def serve(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Start the OpenAI-compatible gateway."""
    import os

    import uvicorn

    from mantlet.gateway.app import bootstrap_admin_key, create_app
    from mantlet.gateway.asgi import SETTINGS_VARIABLE, configure_access_log
    from mantlet.gateway.settings import load_settings

    settings = load_settings(config, overrides={"data_dir": data_dir, "host": host, "port": port})
    configure_access_log()
    store = _store(config, data_dir)
    admin_key = bootstrap_admin_key(store)
    store.close()
    if admin_key:
        # Printed once, to the terminal only; it is stored as a keyed hash.
        stderr.print(f"[bold]bootstrap admin key (shown once):[/] {admin_key}", highlight=False)
    stderr.print(
        f"Mantlet gateway on http://{settings.host}:{settings.port}/v1 "
        f"(policy {settings.policy}, models: {', '.join(r.model for r in settings.routes)}"
        f"{f', {workers} workers' if workers > 1 else ''})"
    )
    if workers == 1:
        app = create_app(settings)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            timeout_graceful_shutdown=settings.shutdown_grace_s,
        )
        return
    if settings.quotas.storage_uri.startswith("memory"):
        stderr.print(
            "note: rate limits and token budgets are counted per worker with memory://;"
            " set quotas.storage_uri to redis://... to share them"
        )
    os.environ[SETTINGS_VARIABLE] = settings.model_dump_json()
    uvicorn.run(
        "mantlet.gateway.asgi:app_from_environment",
        factory=True,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


@keys_app.command("create")
@guarded
def create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")] = "default",
    role: Annotated[
        str, typer.Option(help="admin, auditor, app, or a custom role from the settings.")
    ] = "app",
    name: Annotated[str, typer.Option(help="A label for humans.")] = "",
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Allowed model (repeatable; default all).")
    ] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Expire after N days.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key; the full key is printed once and never stored."""
    from mantlet.gateway.roles import role_table
    from mantlet.gateway.settings import load_settings

    roles = role_table(load_settings(config, overrides={"data_dir": data_dir}).roles)
    if role not in roles:
        raise typer.BadParameter(
            f"unknown role {role!r}; known: {sorted(roles)}", param_hint="--role"
        )
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    key, info = _store(config, data_dir).create(
        tenant=tenant, role=role, name=name, models=model or None, expires_at=expires
    )
    _record_admin(
        config,
        data_dir,
        {"action": "keys.create", "key_id": info.key_id, "key_tenant": tenant, "key_role": role},
    )
    if as_json:
        print_json({"key": key, **info.to_dict()})
    else:
        stdout.print(f"{key}\n(key id {info.key_id}; store it now, it is not shown again)")


@keys_app.command("list")
@guarded
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List keys (ids and metadata, never secrets)."""
    infos = _store(config, data_dir).list(tenant=tenant)
    if as_json:
        print_json([i.to_dict() for i in infos])
        return
    table = Table("key id", "name", "tenant", "role", "models", "expires", "revoked")
    for info in infos:
        table.add_row(
            info.key_id,
            info.name,
            info.tenant,
            info.role,
            ", ".join(info.models) if info.models else "all",
            info.expires_at.isoformat() if info.expires_at else "",
            info.revoked_at.isoformat() if info.revoked_at else "",
        )
    stdout.print(table)


@keys_app.command("revoke")
@guarded
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (the part after 'mk-').")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a key; takes effect on the next request."""
    _store(config, data_dir).revoke(key_id)
    _record_admin(config, data_dir, {"action": "keys.revoke", "key_id": key_id})
    stdout.print(f"revoked {key_id}")


@keys_app.command("rotate")
@guarded
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key id to replace.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a new key with the same tenant, role and models; revoke the old one.

    A second-factor enrolment moves to the new key."""
    store, factors = _stores(config, data_dir)
    key, info = store.rotate(key_id)
    factors.transfer(key_id, info.key_id)
    _record_admin(
        config, data_dir, {"action": "keys.rotate", "key_id": key_id, "new_key_id": info.key_id}
    )
    if as_json:
        print_json({"key": key, **info.to_dict()})
    else:
        stdout.print(f"{key}\n(replaces {key_id}; store it now, it is not shown again)")


@keys_app.command("mfa-enroll")
@guarded
def mfa_enroll(
    key_id: Annotated[str, typer.Argument(help="The key id (the part after 'mk-').")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Enrol a key for a second factor (TOTP) on admin routes.

    Prints the otpauth URI once: add it to an authenticator app. The key's
    admin routes then want a current code in the x-mantlet-otp header."""
    store, factors = _stores(config, data_dir)
    if store.info(key_id) is None:
        raise typer.BadParameter(f"no API key with id {key_id[:16]!r}", param_hint="KEY_ID")
    uri = factors.enroll(key_id)
    _record_admin(config, data_dir, {"action": "keys.mfa_enroll", "key_id": key_id})
    if as_json:
        print_json({"key_id": key_id, "otpauth_uri": uri})
    else:
        stdout.print(f"{uri}\n(add this to an authenticator app now; it is not shown again)")


@keys_app.command("mfa-remove")
@guarded
def mfa_remove(
    key_id: Annotated[str, typer.Argument(help="The key id.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove a key's second-factor enrolment (from the server, never the API)."""
    removed = _stores(config, data_dir)[1].remove(key_id)
    _record_admin(config, data_dir, {"action": "keys.mfa_remove", "key_id": key_id})
    stdout.print(f"removed the enrolment of {key_id}" if removed else f"{key_id} was not enrolled")
