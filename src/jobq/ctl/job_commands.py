"""`jq-ctl job ...`: submit, status, cancel, list, logs, retry (SPEC §8)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobq.ctl import job_tables
from jobq.ctl.context import CtlState
from jobq.ctl.durations import DURATION_HELP, DurationError, parse_duration, parse_instant
from jobq.ctl.output import now_utc
from jobq.ctl.payloads import build_payload
from jobq.domain.states import JobStatus

app = typer.Typer(
    name="job",
    help="Submit, inspect, cancel and retry jobs.",
    no_args_is_help=True,
)

JobId = Annotated[
    str, typer.Argument(metavar="ID", help="The job's id (a UUID).", show_default=False)
]


@app.command("submit", context_settings={"allow_interspersed_args": False})
def submit(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="CMD",
            help="The command to run and its arguments, after `--`: the payload becomes "
            '{"command": [CMD, ARGS...]}.',
            show_default=False,
        ),
    ] = None,
    queue: Annotated[str, typer.Option("--queue", "-q", help="The queue.")] = "default",
    priority: Annotated[
        int, typer.Option("--priority", "-p", min=0, max=9, help="0..9; higher runs first.")
    ] = 0,
    max_retries: Annotated[
        int | None,
        typer.Option(
            "--max-retries", min=0, max=1000, help="Retries after a failure (default: the queue's)."
        ),
    ] = None,
    delay: Annotated[
        str | None,
        typer.Option(
            "--delay", metavar="DURATION", help=f"Run no sooner than this ({DURATION_HELP})."
        ),
    ] = None,
    not_before: Annotated[
        str | None,
        typer.Option(
            "--not-before",
            metavar="ISO8601",
            help="Run no sooner than this instant, e.g. 2030-01-01T09:00:00+02:00; "
            "without a timezone it is UTC.",
        ),
    ] = None,
    payload: Annotated[
        str | None, typer.Option("--payload", metavar="JSON", help="The payload, as JSON text.")
    ] = None,
    payload_file: Annotated[
        Path | None,
        typer.Option(
            "--payload-file", metavar="FILE", help="Read the JSON payload from FILE ('-': stdin)."
        ),
    ] = None,
    idempotency_key: Annotated[
        str,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Submit at most once under KEY (1..255 printable ASCII characters): if a job "
            "already holds KEY, nothing is created and that job's id is printed. A key is held "
            "as long as its job is kept, whatever its status.",
        ),
    ] = "",
    concurrency_key: Annotated[
        str,
        typer.Option(
            "--key",
            metavar="KEY",
            help="The concurrency key (1..255 printable ASCII characters, e.g. a customer's "
            "id) the queue's per-key limits count this job under (`jq-ctl queue limit`).",
        ),
    ] = "",
    after: Annotated[
        list[str] | None,
        typer.Option(
            "--after",
            metavar="JOB_ID",
            help="Run only after this job has ended DONE (repeatable, at most 100): until then "
            "the job is WAITING; if it is dead-lettered, so is this one (DEPENDENCY_FAILED).",
        ),
    ] = None,
) -> None:
    """Submit a job and print its id.

    The payload comes from exactly one of --payload, --payload-file or a command after `--`:

        jq-ctl job submit -- echo hello

        jq-ctl job submit --queue emails --payload '{"handler": "app.tasks:ping"}'

    With --after, it runs once all the jobs named are DONE:

        a=$(jq-ctl job submit -- make build)
        jq-ctl job submit --after "$a" -- make deploy

    With --idempotency-key, a repeated submit prints the id of the job that holds the key and
    says on stderr that it already existed (JSON and YAML: `existing: true`).
    """
    body = build_payload(payload, payload_file, command or [])
    if delay is not None and not_before is not None:
        raise typer.BadParameter("give --delay or --not-before, not both", param_hint="--delay")
    try:
        wait = parse_duration(delay) if delay is not None else None
    except DurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--delay") from None
    try:
        instant = parse_instant(not_before) if not_before is not None else None
    except DurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--not-before") from None
    state = CtlState.of(ctx)
    reply = state.client().submit_job(
        queue,
        body,
        priority,
        max_retries,
        wait,
        instant,
        idempotency_key,
        concurrency_key=concurrency_key,
        depends_on=after or (),
    )
    state.printer.show(reply, lambda: reply.job_id)
    if reply.existing and state.printer.output == "table":
        # stdout keeps the bare id, so `id=$(jq-ctl job submit ...)` works either way.
        typer.echo(
            f"job {reply.job_id} already existed (idempotency key {idempotency_key!r}):"
            " nothing new was submitted",
            err=True,
        )


@app.command("status")
def status(ctx: typer.Context, job_id: JobId) -> None:
    """Show a job: status, retries, worker, times, payload, result and error."""
    state = CtlState.of(ctx)
    reply = state.client().job_status(job_id)
    state.printer.show(reply, lambda: job_tables.job_detail(reply.job, now_utc()))


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: JobId) -> None:
    """Cancel a job: a PENDING, ASSIGNED or WAITING one is dead-lettered at once (reason
    CANCELLED), and so are the jobs that wait for it (DEPENDENCY_FAILED); a RUNNING one is
    stopped by its worker, then dead-lettered (the reply says requested)."""
    state = CtlState.of(ctx)
    reply = state.client().cancel_job(job_id)
    state.printer.show(reply, lambda: job_tables.job_changed(reply.job, "cancelled"))


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    queue: Annotated[str, typer.Option("--queue", "-q", help="Only this queue.")] = "",
    status: Annotated[
        JobStatus | None,
        typer.Option("--status", "-s", case_sensitive=False, help="Only jobs in this status."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=100, help="Jobs per page.")
    ] = 20,
    page_token: Annotated[
        str,
        typer.Option(
            "--page-token", metavar="TOKEN", help="The next page, as printed by the last call."
        ),
    ] = "",
) -> None:
    """List jobs, newest first, one page at a time (the next page's token is printed last)."""
    state = CtlState.of(ctx)
    reply = state.client().list_jobs(queue, status.value if status else None, limit, page_token)
    state.printer.show(reply, lambda: job_tables.jobs_table(reply, now_utc()))


@app.command("logs")
def logs(ctx: typer.Context, job_id: JobId) -> None:
    """Show a job's history: every state change, oldest first, with its reason and worker."""
    state = CtlState.of(ctx)
    reply = state.client().job_logs(job_id)
    state.printer.show(reply, lambda: job_tables.events_table(reply, now_utc()))


@app.command("retry")
def retry(ctx: typer.Context, job_id: JobId) -> None:
    """Run a FAILED or DEAD_LETTERED job again, with its retry count reset."""
    state = CtlState.of(ctx)
    reply = state.client().retry_job(job_id)
    state.printer.show(reply, lambda: job_tables.job_changed(reply.job, "retried"))
