"""Entry point of the ``mantlet`` command: wires the command groups together."""

from __future__ import annotations

from typing import Annotated

import typer

from mantlet.cli import anonymize as anonymize_command
from mantlet.cli import audit, gateway, info, policy, redteam, scan, watermark
from mantlet.cli import eval as eval_command
from mantlet.cli._common import set_verbose

app = typer.Typer(
    name="mantlet",
    help="Mantlet: a security-by-design shield for generative-AI applications.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show full tracebacks instead of diagnostics.")
    ] = False,
) -> None:
    set_verbose(verbose)


app.command("scan")(scan.scan)
app.command("eval")(eval_command.evaluate_command)
app.command("anonymize")(anonymize_command.anonymize)
app.add_typer(policy.app, name="policy")
app.command("serve")(gateway.serve)
app.add_typer(gateway.keys_app, name="keys")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(audit.tenant_app, name="tenant")
app.command("verify")(audit.verify_manifest_command)
app.command("encrypt")(audit.encrypt_command)
app.command("decrypt")(audit.decrypt_command)
app.add_typer(watermark.app, name="watermark")
app.command("redteam")(redteam.redteam)
app.command("detectors")(info.detectors)
app.command("version")(info.version)


def main() -> None:
    app()
