"""What every ``ipbench`` command shares: option help, the two consoles, JSON output and the
one-line handling of input errors."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from ipbench.core.errors import IpbenchError

err = Console(stderr=True, soft_wrap=True)

WORKDIR_HELP = "work directory holding the result store and cached artefacts"
RECOMPUTE_HELP = (
    "recompute this stage although it is cached (baseline, protect, evaluate, attack:NAME, "
    "attacks); the way out when a stored artefact fails its integrity check (repeatable)"
)
JSON_HELP = "print the result as JSON on stdout (status lines stay on stderr)"
DATA_ROOT_HELP = "folder holding the datasets (default $IPBENCH_DATA or ./data)"


def out() -> Console:
    """stdout: the terminal's width on a terminal; piped, wide enough that nothing wraps."""
    return Console(width=None if sys.stdout.isatty() else 100_000, soft_wrap=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def print_error(message: str) -> None:
    """One red ``error:`` line on stderr. The message quotes user input (names, paths, values),
    so it is never read as markup: ``x[/]`` prints as typed instead of failing."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def print_problems(problems: list[str]) -> None:
    """One yellow ``warning:`` line on stderr per row a reader left out (or per reason it
    could not check any): what was printed is what verified, and this names the rest."""
    for problem in dict.fromkeys(problems):
        err.print(f"[bold yellow]warning:[/] {escape(problem)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Input errors become one red line and exit code 2, never a traceback."""
    try:
        yield
    except IpbenchError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None


def record_json(rec: Any) -> dict[str, Any]:
    """A stored run's record as JSON-ready fields (timestamps as ISO strings)."""
    fields = ("run_id", "status", "scheme", "dataset", "model", "preset", "seed", "reduced")
    return {f: getattr(rec, f) for f in fields} | {
        "created": dt.datetime.fromtimestamp(rec.created).isoformat(timespec="seconds"),
        "updated": dt.datetime.fromtimestamp(rec.updated).isoformat(timespec="seconds"),
    }
