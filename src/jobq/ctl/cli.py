"""`jq-ctl`: the operator CLI (SPEC §8)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobq import __version__

PROG = "jq-ctl"

app = typer.Typer(
    name=PROG,
    help="jobq operator CLI: jobs, queues, workers and system status.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """jobq operator CLI: jobs, queues, workers and system status."""


@app.command("version")
def version_command() -> None:
    """Print the jq-ctl version."""
    typer.echo(f"{PROG} {__version__}")


def main() -> None:
    app(prog_name=PROG)


if __name__ == "__main__":
    main()
