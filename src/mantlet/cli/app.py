"""Entry point of the ``mantlet`` command: wires the command groups together."""

from __future__ import annotations

from typing import Annotated

import typer

from mantlet.cli import eval as eval_command
from mantlet.cli import gateway, info, policy, redteam, scan
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
app.add_typer(policy.app, name="policy")
app.command("serve")(gateway.serve)
app.add_typer(gateway.keys_app, name="keys")
app.command("redteam")(redteam.redteam)
app.command("detectors")(info.detectors)
app.command("version")(info.version)


def main() -> None:
    app()
