"""``mantlet audit``, ``mantlet tenant``, ``mantlet verify``, ``mantlet
encrypt`` and ``mantlet decrypt``: the accountability commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from mantlet.cli._common import guarded, print_json, read_text, stderr, stdout
from mantlet.cli.gateway import ConfigOption, DataDirOption, JsonFlag, open_accountability
from mantlet.errors import InvalidInputError

audit_app = typer.Typer(
    help="Verify, prove, export and follow the tamper-evident audit log.", no_args_is_help=True
)
tenant_app = typer.Typer(
    help="Tenant data keys: list, erase (crypto-shredding), rotate the master key.",
    no_args_is_help=True,
)


@audit_app.command("verify")
@guarded
def verify(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint", help="A signed checkpoint kept elsewhere (witness); repeatable."
        ),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Recompute every record, tree node and checkpoint; exit 1 naming the
    first bad record if anything was edited, deleted, inserted, reordered or
    truncated."""
    from mantlet.audit import verify_log

    trail = open_accountability(config, data_dir)
    witnessed = [read_text(None, p) for p in checkpoint or []]
    report = verify_log(trail.log, trail.verifier, witnessed=witnessed)
    if as_json:
        print_json(report.to_dict())
    elif report.ok:
        stdout.print(
            f"ok: {report.records} records, root {report.root}, "
            f"{report.checkpoints_checked} signed checkpoint(s) match"
        )
    else:
        first = report.first_bad
        assert first is not None
        where = f"record {first.seq}" if first.seq is not None else "log"
        stderr.print(f"[bold red]FAILED[/] at {where}: {first.reason}")
        for other in report.problems:
            if other is not first:
                stderr.print(f"  also: {other.reason}")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("proof")
@guarded
def proof(
    index: Annotated[int | None, typer.Option(min=0, help="Inclusion proof for record N.")] = None,
    consistency: Annotated[
        tuple[int, int] | None,
        typer.Option(help="Consistency proof between two tree sizes FIRST SECOND."),
    ] = None,
    size: Annotated[int | None, typer.Option(min=1, help="Tree size (default: current).")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Print an inclusion or consistency proof (RFC 9162), verified before printing."""
    from mantlet.audit import merkle

    if (index is None) == (consistency is None):
        raise InvalidInputError("give exactly one of --index N or --consistency FIRST SECOND")
    log = open_accountability(config, data_dir).log
    tree_size = size or log.head().size
    try:
        if index is not None:
            record = log.record(index)
            if record is None:
                raise InvalidInputError(f"no record {index}")
            path = log.inclusion_proof(index, tree_size)
            root = log.root(tree_size)
            merkle.verify_inclusion(index, tree_size, record.leaf_hash, path, root)
            out: dict[str, Any] = {
                "type": "inclusion",
                "index": index,
                "tree_size": tree_size,
                "leaf_hash": record.leaf_hash.hex(),
                "root": root.hex(),
                "path": [p.hex() for p in path],
            }
        else:
            assert consistency is not None
            first, second = consistency
            hashes = log.consistency_proof(first, second)
            roots = log.root(first), log.root(second)
            merkle.verify_consistency(first, second, roots[0], roots[1], hashes)
            out = {
                "type": "consistency",
                "first": first,
                "second": second,
                "first_root": roots[0].hex(),
                "second_root": roots[1].hex(),
                "proof": [p.hex() for p in hashes],
            }
    except merkle.ProofError as exc:
        raise InvalidInputError(str(exc)) from None
    if as_json:
        print_json(out)
    else:
        for key, value in out.items():
            shown = "\n  ".join(value) if isinstance(value, list) else value
            stdout.print(f"{key}: {shown}", highlight=False)


@audit_app.command("export")
@guarded
def export(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSONL file (default: stdout).")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's records.")] = None,
    start: Annotated[int, typer.Option(min=0, help="First sequence number.")] = 0,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write records as JSON lines: seq, leaf hash and the record as stored."""
    log = open_accountability(config, data_dir).log
    handle = out.open("w", encoding="utf-8") if out else sys.stdout
    count = 0
    try:
        for record in log.records(start=start, tenant=tenant):
            line = {"seq": record.seq, "leaf_hash": record.leaf_hash.hex()}
            handle.write(json.dumps({**line, "record": json.loads(record.body)}) + "\n")
            count += 1
    finally:
        if out:
            handle.close()
    if out:
        stderr.print(f"exported {count} records to {out}")


@audit_app.command("tail")
@guarded
def tail(
    lines: Annotated[int, typer.Option("-n", min=1, help="How many records.")] = 10,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's records.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the newest records."""
    log = open_accountability(config, data_dir).log
    size = log.head().size
    window = max(0, size - lines * (50 if tenant else 1))
    records = list(log.records(start=window, tenant=tenant))[-lines:]
    if as_json:
        print_json([{"seq": r.seq, "record": json.loads(r.body)} for r in records])
        return
    for record in records:
        data = json.loads(record.body)
        summary = " ".join(
            f"{k}={data[k]}"
            for k in ("time", "type", "action", "route", "status", "tenant", "principal", "model")
            if data.get(k) is not None
        )
        stdout.print(f"{record.seq:>8}  {summary}", highlight=False)


@audit_app.command("checkpoint")
@guarded
def checkpoint(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Sign and publish a checkpoint of the current tree now; print the note."""
    trail = open_accountability(config, data_dir)
    published = trail.publish_checkpoint()
    if as_json:
        print_json(
            {
                "size": published.size,
                "note": published.note,
                "verifier_key": trail.signer.verifier_key,
            }
        )
    else:
        sys.stdout.write(published.note or "")


@audit_app.command("payload")
@guarded
def payload(
    seq: Annotated[int, typer.Argument(min=0, help="The record's sequence number.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Decrypt a stored request/response payload (fails after tenant erase)."""
    from mantlet.crypto.tenant_keys import DecryptionError, TenantErased

    trail = open_accountability(config, data_dir)
    try:
        found = trail.payloads.read(seq)
    except (TenantErased, DecryptionError) as exc:
        raise InvalidInputError(str(exc)) from None
    if found is None:
        raise InvalidInputError(f"no payload stored for record {seq}")
    sys.stdout.write(found[1].decode("utf-8") + "\n")


@tenant_app.command("erase")
@guarded
def erase(
    tenant: Annotated[str, typer.Option(help="The tenant whose data key is destroyed.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Crypto-shred a tenant: destroy its data key so its stored payloads can
    never be decrypted again. The audit log keeps verifying."""
    if not yes and not typer.confirm(f"Destroy the data key of tenant {tenant!r} for good?"):
        raise typer.Exit(1)
    trail = open_accountability(config, data_dir)
    destroyed = trail.keyring.erase(tenant)
    seq = trail.append_sync(
        {"v": 1, "type": "admin", "action": "tenant.erase", "tenant": tenant, "via": "cli"}
    )
    if as_json:
        print_json({"tenant": tenant, "key_destroyed": destroyed, "audit_index": seq})
    else:
        what = "data key destroyed" if destroyed else "no live data key (marked erased)"
        stdout.print(f"tenant {tenant}: {what}; audit record {seq}")


@tenant_app.command("keys")
@guarded
def tenant_keys(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List tenant data keys (ids and dates, never key material)."""
    rows = open_accountability(config, data_dir).keyring.status()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        state = (
            f"erased {row['erased_at']}" if row["erased_at"] else f"under {row['master_key_id']}"
        )
        stdout.print(f"{row['tenant']}: {state}", highlight=False)


@tenant_app.command("rotate-master")
@guarded
def rotate_master(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a new master key (file provider) and re-wrap every tenant data key
    under it; payloads are not re-encrypted."""
    from mantlet.crypto.keyproviders import FileKeyProvider

    trail = open_accountability(config, data_dir)
    provider = trail.keyring.provider
    # env provider: the operator has already put the new key first.
    file_based = isinstance(provider, FileKeyProvider)
    new_id = provider.rotate() if file_based else provider.current_key_id
    count = trail.keyring.rewrap_all()
    seq = trail.append_sync(
        {"v": 1, "type": "admin", "action": "master_key.rotate", "master_key_id": new_id}
    )
    if as_json:
        print_json({"master_key_id": new_id, "rewrapped": count, "audit_index": seq})
    else:
        stdout.print(f"master key {new_id} is current; {count} data key(s) re-wrapped")


@guarded
def verify_manifest_command(
    manifest: Annotated[
        Path, typer.Option("--manifest", help="Compact JWS, or JSON with a 'jws' field.")
    ],
    text: Annotated[Path, typer.Option("--text", help="The answer text, UTF-8.")],
    keys: Annotated[
        Path | None,
        typer.Option("--keys", help="JWKS file (default: this data directory's public key)."),
    ] = None,
    choice: Annotated[
        int | None, typer.Option(min=0, help="Which choice the text is (default: any).")
    ] = None,
    tool_calls: Annotated[
        Path | None,
        typer.Option(
            "--tool-calls",
            help="JSON list of the choice's tool calls as received (chat or Responses shape);"
            " they must match too.",
        ),
    ] = None,
    reasoning: Annotated[
        Path | None,
        typer.Option("--reasoning", help="The choice's reasoning trace, UTF-8; it must match too."),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify a provenance manifest offline; exit 0 only if it is valid for the
    text (and the tool calls and reasoning trace, when given)."""
    from mantlet.provenance import ManifestError, verify_manifest

    raw = read_text(None, manifest).strip()
    token = raw
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
            token = str(data["jws"])
        except (ValueError, KeyError, TypeError):
            raise InvalidInputError("manifest JSON has no 'jws' field") from None
    answer = read_text(None, text)
    calls = None
    if tool_calls is not None:
        try:
            calls = json.loads(read_text(None, tool_calls))
        except ValueError:
            raise InvalidInputError(f"{tool_calls} is not JSON") from None
        if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
            raise InvalidInputError(f"{tool_calls} must hold a JSON list of tool-call objects")
    if keys is not None:
        try:
            jwks = json.loads(read_text(None, keys))
        except ValueError:
            raise InvalidInputError(f"{keys} is not JSON") from None
    else:
        jwks = open_accountability(config, data_dir).signing_key.jwks()
    try:
        trace = read_text(None, reasoning) if reasoning is not None else None
        result = verify_manifest(
            token, answer, jwks, choice=choice, tool_calls=calls, reasoning=trace
        )
    except ManifestError as exc:
        if as_json:
            print_json({"valid": False, "reason": str(exc)})
        else:
            stderr.print(f"[bold red]INVALID[/]: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        print_json({"valid": True, "kid": result.kid, "choice": result.choice, **result.manifest})
    else:
        generator = result.manifest.get("generator", {})
        stdout.print(
            f"valid: AI-generated by {generator.get('model')} via {generator.get('name')} "
            f"{generator.get('version')}, request {result.manifest.get('request_id')}, "
            f"audit index {result.manifest.get('audit', {}).get('index')}",
            highlight=False,
        )


def _crypt(
    source: Path, target: Path, config: Path | None, data_dir: Path | None, *, enc: bool
) -> int:
    from mantlet.crypto.filecrypt import decrypt_stream, encrypt_stream

    provider = open_accountability(config, data_dir).keyring.provider
    if target.exists():
        raise InvalidInputError(f"{target} exists; not overwriting")
    partial = target.with_name(target.name + ".partial")
    total = source.stat().st_size
    columns = (BarColumn(), DownloadColumn(), TimeRemainingColumn())
    try:
        with (
            source.open("rb") as reader,
            open(partial, "wb") as writer,
            Progress(*columns, console=stderr, transient=True) as bar,
        ):
            task = bar.add_task("encrypt" if enc else "decrypt", total=total)

            def advance(n: int) -> None:
                bar.advance(task, n)

            run = encrypt_stream if enc else decrypt_stream
            count = run(reader, writer, provider, progress=advance)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)  # never leave a half-decrypted file
        raise
    return count


@guarded
def encrypt_command(
    source: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Plain file.")],
    target: Annotated[Path, typer.Argument(help="Encrypted file to write.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Encrypt a file (chunked AES-256-GCM, key from the master-key provider)."""
    count = _crypt(source, target, config, data_dir, enc=True)
    stderr.print(f"encrypted {count} bytes into {target}")


@guarded
def decrypt_command(
    source: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Encrypted file.")],
    target: Annotated[Path, typer.Argument(help="Plain file to write.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Decrypt a file; any modified, reordered or missing chunk is an error
    and nothing is written."""
    from mantlet.crypto.filecrypt import FileCryptError

    try:
        count = _crypt(source, target, config, data_dir, enc=False)
    except FileCryptError as exc:
        raise InvalidInputError(str(exc)) from None
    stderr.print(f"decrypted {count} bytes into {target}")
