"""`jq-ctl schedule add|list|show|remove|pause|resume`: cron and periodic jobs (README
"Schedules")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobq.ctl import schedule_tables
from jobq.ctl.context import CtlState
from jobq.ctl.durations import DURATION_HELP, DurationError, parse_duration
from jobq.ctl.output import now_utc
from jobq.ctl.payloads import build_payload
from jobq.domain.schedules import MissedPolicy
from jobq.rpc._gen import schedules_pb2 as spb

app = typer.Typer(
    name="schedule",
    help="Cron and periodic jobs: add, list, show, pause, resume and remove schedules.",
    no_args_is_help=True,
)

ScheduleName = Annotated[
    str, typer.Argument(metavar="NAME", help="The schedule's name.", show_default=False)
]

_MISSED = {
    MissedPolicy.SKIP: spb.MISSED_TICK_POLICY_SKIP,
    MissedPolicy.ONCE: spb.MISSED_TICK_POLICY_ONCE,
}


def _interval_seconds(every: str) -> int:
    try:
        seconds = parse_duration(every).total_seconds()
    except DurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--every") from None
    if seconds != int(seconds) or seconds < 1:
        raise typer.BadParameter("an interval is whole seconds, at least 1s", param_hint="--every")
    return int(seconds)


@app.command("add")
def add(
    ctx: typer.Context,
    name: ScheduleName,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="CMD",
            help="The command to run and its arguments, after `--`: the payload becomes "
            '{"command": [CMD, ARGS...]}.',
            show_default=False,
        ),
    ] = None,
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron",
            metavar="EXPR",
            help="A five-field cron expression (minute hour day-of-month month day-of-week), "
            "e.g. '*/5 * * * *'.",
        ),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz", metavar="ZONE", help="The IANA time zone of --cron, e.g. Europe/Paris; UTC."
        ),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            "--every", metavar="DURATION", help=f"Tick at this interval ({DURATION_HELP})."
        ),
    ] = None,
    queue: Annotated[str, typer.Option("--queue", "-q", help="The jobs' queue.")] = "default",
    priority: Annotated[
        int, typer.Option("--priority", "-p", min=0, max=9, help="0..9; higher runs first.")
    ] = 0,
    max_retries: Annotated[
        int | None,
        typer.Option(
            "--max-retries", min=0, max=1000, help="Retries after a failure (default: the queue's)."
        ),
    ] = None,
    missed: Annotated[
        MissedPolicy,
        typer.Option(
            "--missed",
            case_sensitive=False,
            help="Ticks missed while no jq-server ran: skip them (run at the next tick), or "
            "enqueue one job for them (once).",
        ),
    ] = MissedPolicy.SKIP,
    payload: Annotated[
        str | None, typer.Option("--payload", metavar="JSON", help="The payload, as JSON text.")
    ] = None,
    payload_file: Annotated[
        Path | None,
        typer.Option(
            "--payload-file", metavar="FILE", help="Read the JSON payload from FILE ('-': stdin)."
        ),
    ] = None,
) -> None:
    """Add a schedule: a job enqueued at every tick of a cron expression or an interval.

    The job's payload comes from exactly one of --payload, --payload-file or a command after
    `--`, as for `job submit`:

        jq-ctl schedule add nightly --cron "0 3 * * *" --tz Europe/Paris -- /usr/bin/backup

        jq-ctl schedule add ping --every 30s --queue checks --payload '{"handler": "app:ping"}'
    """
    if (cron is None) == (every is None):
        raise typer.BadParameter("give --cron or --every (one of them)", param_hint="--cron")
    if tz is not None and cron is None:
        raise typer.BadParameter("--tz applies to --cron only", param_hint="--tz")
    body = build_payload(payload, payload_file, command or [])
    request = spb.CreateScheduleRequest(
        name=name,
        cron=cron or "",
        time_zone=tz or "",
        interval_seconds=_interval_seconds(every) if every is not None else 0,
        queue_name=queue,
        payload=body,
        priority=priority,
        missed=_MISSED[missed],
    )
    if max_retries is not None:
        request.max_retries = max_retries
    state = CtlState.of(ctx)
    reply = state.client().create_schedule(request)
    state.printer.show(
        reply, lambda: schedule_tables.schedule_changed(reply.schedule, "added", now_utc())
    )


@app.command("list")
def list_schedules(ctx: typer.Context) -> None:
    """List every schedule: when it ticks, its queue, whether it is paused, its next run."""
    state = CtlState.of(ctx)
    reply = state.client().list_schedules()
    state.printer.show(reply, lambda: schedule_tables.schedules_table(reply, now_utc()))


@app.command("show")
def show(ctx: typer.Context, name: ScheduleName) -> None:
    """Show a schedule, its job template and its next run times."""
    state = CtlState.of(ctx)
    reply = state.client().get_schedule(name)
    state.printer.show(reply, lambda: schedule_tables.schedule_detail(reply.schedule, now_utc()))


@app.command("remove")
def remove(ctx: typer.Context, name: ScheduleName) -> None:
    """Remove a schedule; the jobs it enqueued stay."""
    state = CtlState.of(ctx)
    reply = state.client().delete_schedule(name)
    state.printer.show(reply, lambda: f"schedule '{name}' removed")


@app.command("pause")
def pause(ctx: typer.Context, name: ScheduleName) -> None:
    """Pause a schedule: it enqueues nothing until resumed."""
    state = CtlState.of(ctx)
    reply = state.client().pause_schedule(name)
    state.printer.show(
        reply, lambda: schedule_tables.schedule_changed(reply.schedule, "paused", now_utc())
    )


@app.command("resume")
def resume(ctx: typer.Context, name: ScheduleName) -> None:
    """Resume a paused schedule at its next future tick (ticks missed meanwhile are not run)."""
    state = CtlState.of(ctx)
    reply = state.client().resume_schedule(name)
    state.printer.show(
        reply, lambda: schedule_tables.schedule_changed(reply.schedule, "resumed", now_utc())
    )
