"""`jq-ctl queue|worker|system ...`: the operator's side of the AdminService (SPEC §8)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from jobq.ctl import admin_tables
from jobq.ctl.context import CtlState
from jobq.ctl.durations import DURATION_HELP, DurationError, parse_duration
from jobq.ctl.output import now_utc
from jobq.domain.flow_limits import MAX_LIMIT, parse_rate
from jobq.domain.states import WorkerStatus

queue_app = typer.Typer(
    name="queue", help="List, create, delete and inspect queues.", no_args_is_help=True
)
worker_app = typer.Typer(
    name="worker", help="List, drain and shut down workers.", no_args_is_help=True
)
system_app = typer.Typer(
    name="system", help="The health of jq-server and its dependencies.", no_args_is_help=True
)

QueueName = Annotated[
    str, typer.Argument(metavar="NAME", help="The queue's name.", show_default=False)
]
WorkerId = Annotated[str, typer.Argument(metavar="ID", help="The worker's id.", show_default=False)]


@queue_app.command("list")
def list_queues(ctx: typer.Context) -> None:
    """List every queue with its retry, interruption and TTL settings."""
    state = CtlState.of(ctx)
    reply = state.client().list_queues()
    state.printer.show(reply, lambda: admin_tables.queues_table(reply, now_utc()))


def _ttl_seconds(ttl: str | None) -> int | None:
    if ttl is None:
        return None
    try:
        seconds = parse_duration(ttl).total_seconds()
    except DurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from None
    if seconds != int(seconds):
        raise typer.BadParameter("a TTL is whole seconds", param_hint="--ttl")
    return int(seconds)


@queue_app.command("create")
def create_queue(
    ctx: typer.Context,
    name: QueueName,
    max_retries: Annotated[
        int | None,
        typer.Option(
            "--max-retries",
            min=0,
            max=1000,
            help="Retries of a failed job (default: the server's).",
        ),
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option(
            "--ttl",
            metavar="DURATION",
            help=f"Dead-letter jobs pending longer than this ({DURATION_HELP}); 0: never.",
        ),
    ] = None,
    max_interruptions: Annotated[
        int | None,
        typer.Option(
            "--max-interruptions",
            min=0,
            max=1000,
            help="Interruptions (a lost or restarted worker, an assignment timeout) a job "
            "survives; the next one dead-letters it as POISON (default: 3). They use no "
            "retries.",
        ),
    ] = None,
) -> None:
    """Create a queue."""
    seconds = _ttl_seconds(ttl)
    state = CtlState.of(ctx)
    reply = state.client().create_queue(name, max_retries, seconds, max_interruptions)
    state.printer.show(reply, lambda: admin_tables.queue_created(reply.queue))


_DELETE_HELP = (
    "Delete a queue: refused while it holds any job, finished ones included (their history "
    "would go with them), unless --force.\n\n"
    "Refused even with --force while a live (ONLINE or DRAINING) worker serves the queue: shut "
    "such workers down first (jq-ctl worker shutdown ID) or restart them without it."
)


@queue_app.command("delete", help=_DELETE_HELP)
def delete_queue(
    ctx: typer.Context,
    name: QueueName,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete the jobs it holds too, finished ones included, with their history. "
            "Does not override the refusal while live workers serve the queue.",
        ),
    ] = False,
) -> None:
    """Delete a queue (see _DELETE_HELP for when it is refused)."""
    state = CtlState.of(ctx)
    reply = state.client().delete_queue(name, force)
    state.printer.show(reply, lambda: admin_tables.queue_deleted(name, reply))


@queue_app.command("stats")
def queue_stats(ctx: typer.Context, name: QueueName) -> None:
    """Show a queue's jobs per status, its oldest pending job's age, its retries and
    interruptions."""
    state = CtlState.of(ctx)
    reply = state.client().queue_stats(name)
    state.printer.show(reply, lambda: admin_tables.queue_stats(reply))


@queue_app.command("pause")
def pause_queue(ctx: typer.Context, name: QueueName) -> None:
    """Pause a queue: it still accepts jobs, but no server dispatches them until `resume`;
    jobs already running finish. Survives restarts; every server honours it."""
    state = CtlState.of(ctx)
    reply = state.client().pause_queue(name)
    state.printer.show(reply, lambda: admin_tables.queue_flow("paused", reply.queue))


@queue_app.command("resume")
def resume_queue(ctx: typer.Context, name: QueueName) -> None:
    """Resume a paused queue: its jobs are dispatched again at once."""
    state = CtlState.of(ctx)
    reply = state.client().resume_queue(name)
    state.printer.show(reply, lambda: admin_tables.queue_flow("resumed", reply.queue))


_RATE_HELP = "LIMIT/PERIOD, e.g. 10/1s, 100/5m, 3/500ms; 0 removes it"


def _rate_option(value: str | None, hint: str) -> tuple[int, timedelta] | None:
    if value is None:
        return None
    try:
        rate = parse_rate(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    return rate.limit, timedelta(seconds=rate.period_s)


@queue_app.command("limit")
def limit_queue(
    ctx: typer.Context,
    name: QueueName,
    max_running: Annotated[
        int | None,
        typer.Option(
            "--max-running",
            min=0,
            max=MAX_LIMIT,
            help="Most of the queue's jobs running at once, on all workers; 0 removes it.",
        ),
    ] = None,
    key_max_running: Annotated[
        int | None,
        typer.Option(
            "--key-max-running",
            min=0,
            max=MAX_LIMIT,
            help="Most jobs of one concurrency key (`job submit --key`) running at once; "
            "0 removes it.",
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", metavar="RATE", help=f"Most starts per period ({_RATE_HELP})."),
    ] = None,
    key_rate: Annotated[
        str | None,
        typer.Option(
            "--key-rate",
            metavar="RATE",
            help=f"Most starts of one concurrency key per period ({_RATE_HELP}).",
        ),
    ] = None,
) -> None:
    """Set or remove a queue's concurrency and rate limits; what is not given stays.

        jq-ctl queue limit emails --max-running 20 --key-max-running 2 --key-rate 10/1m

    Jobs over a limit wait PENDING and start as room frees; nothing fails."""
    if max_running is None and key_max_running is None and rate is None and key_rate is None:
        raise typer.BadParameter(
            "give at least one of --max-running, --key-max-running, --rate, --key-rate"
        )
    state = CtlState.of(ctx)
    reply = state.client().set_queue_limits(
        name,
        max_running,
        key_max_running,
        _rate_option(rate, "--rate"),
        _rate_option(key_rate, "--key-rate"),
    )
    state.printer.show(reply, lambda: admin_tables.queue_flow("limits set", reply.queue))


@worker_app.command("list")
def list_workers(
    ctx: typer.Context,
    status: Annotated[
        WorkerStatus | None,
        typer.Option("--status", "-s", case_sensitive=False, help="Only workers in this status."),
    ] = None,
) -> None:
    """List workers: status, running jobs out of their concurrency, queues, last heartbeat."""
    state = CtlState.of(ctx)
    reply = state.client().list_workers(status.value if status else None)
    state.printer.show(reply, lambda: admin_tables.workers_table(reply, now_utc()))


@worker_app.command("drain")
def drain_worker(ctx: typer.Context, worker_id: WorkerId) -> None:
    """Drain a worker: it finishes its running jobs and takes no new ones."""
    state = CtlState.of(ctx)
    reply = state.client().drain_worker(worker_id)
    state.printer.show(reply, lambda: admin_tables.worker_changed(reply.worker, "draining"))


@worker_app.command("shutdown")
def shutdown_worker(ctx: typer.Context, worker_id: WorkerId) -> None:
    """Ask a worker to stop: it hands back its running jobs, deregisters and exits."""
    state = CtlState.of(ctx)
    reply = state.client().shutdown_worker(worker_id)
    state.printer.show(
        reply, lambda: admin_tables.worker_changed(reply.worker, "asked to shut down")
    )


@system_app.command("status")
def system_status(ctx: typer.Context) -> None:
    """Show the server's version, uptime, PostgreSQL/Redis/Kafka health, worker and job counts."""
    state = CtlState.of(ctx)
    reply = state.client().system_status()
    state.printer.show(reply, lambda: admin_tables.system_status(reply, now_utc()))
