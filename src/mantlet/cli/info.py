"""``mantlet version`` and ``mantlet detectors``: what is installed."""

from __future__ import annotations

import platform
import sys
from typing import Annotated

import typer
from rich.table import Table

from mantlet import __version__
from mantlet.cli._common import guarded, print_json, stdout
from mantlet.core.registry import available, create

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def version(as_json: JsonFlag = False) -> None:
    """Print Mantlet's version."""
    if as_json:
        print_json({"mantlet": __version__, "python": platform.python_version()})
    else:
        stdout.print(f"mantlet {__version__} (Python {platform.python_version()})")


@guarded
def detectors(as_json: JsonFlag = False) -> None:
    """List the registered detectors and the side of traffic each applies to."""
    rows = []
    for name in available():
        detector = create(name)
        module_doc = sys.modules[type(detector).__module__].__doc__ or ""
        rows.append(
            {
                "name": name,
                "sides": detector.sides.value,
                "summary": " ".join(module_doc.strip().split("\n\n")[0].split()),
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table("detector", "sides", "what it finds")
    for row in rows:
        table.add_row(row["name"], row["sides"], row["summary"])
    stdout.print(table)
