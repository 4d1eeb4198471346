"""`jq-ctl`: the operator CLI (SPEC §8).

    jq-ctl [--server-addr H:P] [--output table|json|yaml] [--timeout S]
           [--tls-ca F --tls-cert F --tls-key F] [--token T | --token-file F] [--config FILE]
           GROUP COMMAND

Every failure is one line on stderr, `jq-ctl: <what went wrong>`, never a traceback: exit 1 when
the server refused or failed the call or could not be reached, 2 for a wrong command line or
configuration (typer's code for usage errors).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from jobq import __version__
from jobq.ctl import (
    admin_commands,
    audit_commands,
    event_commands,
    job_commands,
    schedule_commands,
    token_commands,
)
from jobq.ctl.context import PROG, CtlState, GlobalOptions
from jobq.ctl.errors import EXIT_FAILURE, EXIT_USAGE, CtlError, one_line

try:  # typer >= 0.20 vendors click as typer._click; older releases use the click package
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    # The dev venv has the click package too (import-linter needs it), whose classes mypy
    # sees as other types than typer._click's.
    from click.exceptions import (  # type: ignore[assignment]
        ClickException,
        NoArgsIsHelpError,
        UsageError,
    )

app = typer.Typer(
    name=PROG,
    help="jobq operator CLI: jobs, queues, workers, system status, lifecycle events, the audit "
    "trail, tokens and schedules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(job_commands.app)
app.add_typer(admin_commands.queue_app)
app.add_typer(admin_commands.worker_app)
app.add_typer(admin_commands.system_app)
app.add_typer(audit_commands.app)
app.add_typer(event_commands.app)
app.add_typer(token_commands.app)
app.add_typer(schedule_commands.app)

_CONNECTION = "Connection"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    server_addr: Annotated[
        str | None,
        typer.Option(
            "--server-addr",
            metavar="HOST:PORT",
            help="jq-server's gRPC address (env JQ_CTL_SERVER_ADDR; default localhost:50051).",
            rich_help_panel=_CONNECTION,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="table|json|yaml",
            help="How to print replies (env JQ_CTL_OUTPUT; default table).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0.001,
            help="Deadline of each call to jq-server (env JQ_CTL_TIMEOUT_S; default 10).",
            rich_help_panel=_CONNECTION,
        ),
    ] = None,
    tls_ca: Annotated[
        str | None,
        typer.Option(
            "--tls-ca",
            metavar="FILE",
            help="CA certificate (PEM) that signed the server's: use TLS (env JQ_CTL_TLS_CA).",
            rich_help_panel=_CONNECTION,
        ),
    ] = None,
    tls_cert: Annotated[
        str | None,
        typer.Option(
            "--tls-cert",
            metavar="FILE",
            help="Client certificate (PEM) for mutual TLS, with --tls-key (env JQ_CTL_TLS_CERT).",
            rich_help_panel=_CONNECTION,
        ),
    ] = None,
    tls_key: Annotated[
        str | None,
        typer.Option(
            "--tls-key",
            metavar="FILE",
            help="Client private key (PEM) for mutual TLS (env JQ_CTL_TLS_KEY).",
            rich_help_panel=_CONNECTION,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            help="Sent as 'authorization: Bearer TOKEN' (env JQ_CTL_TOKEN, which keeps it out "
            "of the process list).",
            rich_help_panel=_CONNECTION,
        ),
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="Read the bearer token from FILE instead (env JQ_CTL_TOKEN_FILE); not with "
            "--token.",
            rich_help_panel=_CONNECTION,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="YAML configuration file; jq-ctl reads its 'ctl' section. Flags beat the "
            "environment, which beats the file.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """jobq operator CLI: jobs, queues, workers, system status, lifecycle events, the audit trail
    and tokens."""
    state = CtlState(
        GlobalOptions(
            config=config,
            server_addr=server_addr,
            output=output,
            timeout_s=timeout,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            token=token,
            token_file=token_file,
        )
    )
    ctx.obj = state
    ctx.call_on_close(state.close)


@app.command("version")
def version_command(ctx: typer.Context) -> None:
    """Print the jq-ctl version."""
    state = CtlState.of(ctx)
    state.printer.show({"version": __version__}, lambda: f"{PROG} {__version__}")


def _usage_line(error: ClickException) -> str:
    """One line for a command-line mistake, pointing at the right --help."""
    message = one_line(error.format_message())
    ctx = error.ctx if isinstance(error, UsageError) else None
    if ctx is None:
        return message
    return f"{message} (see '{ctx.command_path} --help')"


def run(argv: Sequence[str] | None = None) -> int:
    """Run jq-ctl on `argv` (default: the process's arguments) and return the exit code."""
    try:
        result = app(
            args=None if argv is None else list(argv), prog_name=PROG, standalone_mode=False
        )
    except NoArgsIsHelpError as exc:  # `jq-ctl job`: the group's help, as click does
        print(exc.format_message(), file=sys.stderr)
        return EXIT_USAGE
    except CtlError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except ClickException as exc:
        print(f"{PROG}: {_usage_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except typer.Abort:
        print(f"{PROG}: aborted", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still one line, never a traceback
        print(
            f"{PROG}: unexpected error: {type(exc).__name__}: {one_line(str(exc))}", file=sys.stderr
        )
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0


def main() -> None:
    # gRPC's C core logs connection and TLS trouble on stderr itself; jq-ctl says it in one line.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        code = run()
        sys.stdout.flush()
    except BrokenPipeError:  # `jq-ctl job list | head`: the reader left, which is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_FAILURE
    raise SystemExit(code)


if __name__ == "__main__":
    main()
