"""Helpers shared by the CLI command groups: reading input safely and
turning ``MantletError`` into diagnostics and an exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from mantlet.errors import InvalidInputError, MantletError

EXIT_USAGE = 2
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)

_state = {"verbose": False}


def set_verbose(value: bool) -> None:
    _state["verbose"] = value


@contextmanager
def diagnostics() -> Iterator[None]:
    """Print a MantletError for humans and exit 2; ``--verbose`` re-raises."""
    try:
        yield
    except MantletError as exc:
        if _state["verbose"]:
            raise
        stderr.print(f"[bold red]error:[/] {exc.diagnostics()}", highlight=False, markup=True)
        raise typer.Exit(EXIT_USAGE) from None
    except RecursionError:  # JSON (or YAML) nested past what a parser's stack allows
        if _state["verbose"]:
            raise
        stderr.print("[bold red]error:[/] input nests too deeply to read", markup=True)
        raise typer.Exit(EXIT_USAGE) from None


def read_text(text: str | None, file: Path | None) -> str:
    """Text from an argument, a file, or stdin (``-`` or no argument)."""
    if text is not None and file is not None:
        raise InvalidInputError("give either TEXT or --file, not both")
    if file is not None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {file}: {exc.strerror}") from None
        source = str(file)
    elif text is None or text == "-":
        if text is None and sys.stdin.isatty():
            raise InvalidInputError("no input: pass TEXT, --file PATH, or pipe text on stdin")
        data = sys.stdin.buffer.read()
        source = "stdin"
    else:
        return text
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{source} is not valid UTF-8 (byte {exc.start})") from None


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator form of :func:`diagnostics` for typer commands."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with diagnostics():
            return func(*args, **kwargs)

    return wrapper


def counting_progress(*, hidden: bool) -> Progress:
    """The progress bar of long item-by-item work (n of m, elapsed), on
    stderr and gone when done; ``hidden`` when stdout carries JSON."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=hidden,
    )
