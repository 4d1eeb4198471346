"""`jq-ctl audit list`: the audit trail of admin actions (AdminService.ListAuditEvents)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobq.ctl import admin_tables
from jobq.ctl.context import CtlState
from jobq.ctl.output import now_utc

app = typer.Typer(
    name="audit",
    help="Who did which admin action (queue create/delete, worker drain/shutdown, job "
    "cancel/retry), and how it ended.",
    no_args_is_help=True,
)


_LIST_HELP = (
    "List audit records, newest first, one page at a time (the next page's token is printed "
    "last).\n\n"
    "Refused actions are listed too, with the refusal as their outcome. Needs the admin scope."
)


@app.command("list", help=_LIST_HELP)
def list_audit_events(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=100, help="Records per page.")
    ] = 20,
    action: Annotated[
        str,
        typer.Option(
            "--action",
            "-a",
            metavar="ACTION",
            help="Only this action: queue.create, queue.delete, worker.drain, worker.shutdown, "
            "job.cancel or job.retry.",
        ),
    ] = "",
    actor: Annotated[
        str,
        typer.Option(
            "--actor",
            metavar="WHO",
            help="Only this caller: token:NAME, cert:CN or anonymous.",
        ),
    ] = "",
    page_token: Annotated[
        str,
        typer.Option(
            "--page-token", metavar="TOKEN", help="The next page, as printed by the last call."
        ),
    ] = "",
) -> None:
    """List audit records (see _LIST_HELP)."""
    state = CtlState.of(ctx)
    reply = state.client().list_audit_events(limit, action, actor, page_token)
    state.printer.show(reply, lambda: admin_tables.audit_table(reply, now_utc()))
