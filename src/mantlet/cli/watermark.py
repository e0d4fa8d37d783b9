"""``mantlet watermark``: detect the gateway's watermark in a text; manage
the per-tenant watermark keys (ids only are ever printed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mantlet.cli._common import guarded, print_json, read_text, stdout
from mantlet.cli.gateway import ConfigOption, DataDirOption, JsonFlag
from mantlet.errors import ConfigError

app = typer.Typer(
    help="Detect Mantlet's text watermark; list and rotate watermark keys.",
    no_args_is_help=True,
)


def _settings(config: Path | None, data_dir: Path | None) -> Any:
    from mantlet.gateway.settings import load_settings

    return load_settings(config, overrides={"data_dir": data_dir})


def _ring(settings: Any) -> Any:
    from mantlet.watermark import WatermarkKeyRing

    return WatermarkKeyRing(
        settings.watermark.keys_file or settings.data_dir / "watermark-keys.json"
    )


@app.command("detect")
@guarded
def detect(
    file: Annotated[str | None, typer.Argument(help="Text file, or - for stdin.")] = None,
    tenant: Annotated[str, typer.Option(help="Whose keys to try.")] = "default",
    model: Annotated[
        str | None,
        typer.Option(help="Public name of the local model that wrote it (default: the first)."),
    ] = None,
    gguf: Annotated[
        Path | None, typer.Option(help="Tokenize with this GGUF file instead of a route's model.")
    ] = None,
    windowed: Annotated[
        bool, typer.Option(help="Look for a watermarked passage inside longer text.")
    ] = False,
    min_tokens: Annotated[int, typer.Option(min=8, help="Fewer scored tokens: no verdict.")] = 32,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Test a text against every active watermark key of a tenant.

    Prints z, p-value (corrected for the keys and windows tried), the number
    of scored tokens, the verdict and the matching key id.
    """
    from mantlet.gateway.watermark_routes import local_model_paths
    from mantlet.watermark import GGUFTokenizer, WatermarkDetector, WatermarkParams

    text = read_text(None, None if file in (None, "-") else Path(str(file)))
    settings = _settings(config, data_dir)
    if gguf is None:
        paths = local_model_paths(settings)
        if not paths:
            raise ConfigError("no local model in the settings; pass --gguf PATH")
        name = model or next(iter(paths))
        if name not in paths:
            raise ConfigError(f"{name!r} is not a local model (known: {', '.join(paths)})")
        gguf = paths[name]
    keys = _ring(settings).active(tenant)
    if not keys:
        raise ConfigError(f"tenant {tenant!r} has no active watermark keys")
    wm = settings.watermark
    params = WatermarkParams(gamma=wm.gamma, delta=wm.delta, context=wm.context)
    found = WatermarkDetector(GGUFTokenizer(gguf), params).detect(
        text, keys, windowed=windowed, min_tokens=min_tokens
    )
    if as_json:
        print_json(found.to_dict())
        return
    colour = {"watermarked": "red", "not watermarked": "green"}.get(found.verdict, "yellow")
    stdout.print(f"verdict: [bold {colour}]{found.verdict}[/]")
    if found.z is not None:
        stdout.print(
            f"z = {found.z:.2f}, p = {found.p_value:.3g}, {found.green}/{found.tokens} green "
            f"tokens, key {found.key_id} ({found.keys_tried} key(s) tried)"
        )
    else:
        stdout.print(f"{found.tokens} scored tokens (need {min_tokens})")


@app.command("keys")
@guarded
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List watermark key ids (never the keys)."""
    keys = _ring(_settings(config, data_dir)).keys(tenant)
    if as_json:
        print_json([k.info() for k in keys])
        return
    table = Table("key id", "tenant", "created", "active")
    for k in keys:
        table.add_row(k.key_id, k.tenant, k.created, "yes" if k.active else "no")
    stdout.print(table)


@app.command("rotate")
@guarded
def rotate(
    tenant: Annotated[str, typer.Option(help="Tenant to give a new signing key.")] = "default",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """New signing key for a tenant; older keys stay active for detection."""
    key = _ring(_settings(config, data_dir)).rotate(tenant)
    if as_json:
        print_json(key.info())
    else:
        stdout.print(f"new watermark key {key.key_id} for tenant {tenant}")


@app.command("retire")
@guarded
def retire(
    key_id: Annotated[str, typer.Argument(help="Watermark key id (wk-...).")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Stop signing and detecting with a key."""
    if not _ring(_settings(config, data_dir)).retire(key_id):
        raise ConfigError(f"no watermark key {key_id!r}")
    stdout.print(f"retired {key_id}")
