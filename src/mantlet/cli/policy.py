"""``mantlet policy check|schema|init``: validate, document and start policy files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mantlet.cli._common import guarded, print_json, stdout
from mantlet.errors import InvalidInputError, PolicyError
from mantlet.pipeline import Shield
from mantlet.policy.loader import DEFAULT_PROFILE, json_schema, load_policy, profiles

app = typer.Typer(help="Validate, document and create policy files.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


@app.command("check")
@guarded
def check(
    source: Annotated[str, typer.Argument(help="Policy YAML path or shipped profile name.")],
    as_json: JsonFlag = False,
) -> None:
    """Validate a policy file (and what it extends); exit 2 with the problems if invalid."""
    policy = load_policy(source)
    # Detector options (a rule id, an NER backend) are each detector's own
    # schema: build the detectors, without loading their models, to check them.
    try:
        Shield(policy, warm_up=False).close()
    except PolicyError as exc:
        raise PolicyError(source, exc.problems) from None
    if as_json:
        print_json({"valid": True, "policy": policy.model_dump(mode="json")})
        return
    stdout.print(f"[green]valid[/]: {source} (name {policy.name!r})")
    table = Table("detector", "enabled", "threshold", "default action", "on_error", "per-kind")
    for name, settings in policy.detectors.items():
        table.add_row(
            name,
            "yes" if settings.enabled else "no",
            f"{settings.threshold:.2f}",
            settings.action.value,
            settings.on_error.value,
            ", ".join(f"{k}: {v.value}" for k, v in settings.actions.items()),
        )
    stdout.print(table)


@app.command("schema")
def schema() -> None:
    """Print the policy file's JSON Schema (for editors and CI validation)."""
    print_json(json_schema())


_TEMPLATE = """\
# Mantlet policy. Validate with `mantlet policy check {path}`;
# the full schema: `mantlet policy schema`.
version: 1
name: {name}
extends: {profile}     # shipped profiles: {profiles}
# timeout_ms: 2000      # per-detector deadline; an overrun follows on_error
detectors:
  secrets:
    threshold: 0.5
    action: redact      # allow | flag | redact | block
    actions:            # per finding kind; '*' matches any kind
      PRIVATE_KEY: block
    on_error: block     # fail closed; 'allow' lets requests through unscanned
  # regex:
  #   action: block
  #   options:
  #     patterns:
  #       - kind: PROJECT_CODENAME
  #         pattern: '(?i)\\bproject[ -]nightingale\\b'
"""


@app.command("init")
@guarded
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the new policy.")] = Path(
        "mantlet-policy.yaml"
    ),
    profile: Annotated[str, typer.Option(help="Shipped profile to extend.")] = DEFAULT_PROFILE,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter policy that extends a shipped profile."""
    if profile not in profiles():
        raise InvalidInputError(f"unknown profile {profile!r}; shipped: {', '.join(profiles())}")
    if path.exists() and not force:
        raise InvalidInputError(f"{path} exists; pass --force to overwrite it")
    text = _TEMPLATE.format(
        path=path, name=path.stem, profile=profile, profiles=", ".join(profiles())
    )
    path.write_text(text, encoding="utf-8")
    load_policy(path)  # what we write must validate
    stdout.print(f"wrote {path} (extends {profile})")
