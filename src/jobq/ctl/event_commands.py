"""`jq-ctl events tail`: job lifecycle events as they happen, from PostgreSQL (through
jq-server's ListJobEvents, whether or not Kafka is on) or from the Kafka topics jq-server
publishes them to (`--kafka`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Protocol

import typer

from jobq.ctl.context import CtlState, load_kafka_settings
from jobq.ctl.event_tables import EventPrinter
from jobq.domain.errors import InvalidArgument
from jobq.domain.validation import check_queue_name, parse_uuid

if TYPE_CHECKING:
    from jobq.rpc._gen import common_pb2 as cpb

MAX_LINES = 1000
"""The most lines `-n` asks for: ListJobEvents' largest page."""

app = typer.Typer(
    name="events",
    help="Job lifecycle events (every state change of every job), from PostgreSQL or Kafka.",
    no_args_is_help=True,
)

_TAIL_HELP = (
    "Print the last lifecycle events, oldest first, and with --follow every later one.\n\n"
    "Each line is one state change of a job: when, which job and queue, from which status to "
    "which, why, on which worker and attempt.\n\n"
    "Without --kafka the events come from PostgreSQL through jq-server (scope read), so this "
    "works whether or not Kafka is on. With --kafka they are read from the job topics on the "
    "broker, as Kafka consumers see them; the SASL user and password come from "
    "JQ_KAFKA_SASL_USERNAME and JQ_KAFKA_SASL_PASSWORD (never from a flag, which the process "
    "list shows), the other broker settings from the kafka section of --config and JQ_KAFKA_*. "
    "With --job or --queue, --kafka reads every partition from its start: Kafka cannot seek "
    "by key or queue.\n\n"
    'JSON and YAML: one document {"events": [...]}; with --follow one document per event as '
    "it comes (JSON: one line each). --follow stops on Ctrl-C."
)


class EventSource(Protocol):
    """Where a tail reads events: jobq.ctl.server_events or jobq.ctl.kafka_events."""

    def first(self, lines: int) -> list[cpb.JobEvent]:
        """The last `lines` events, oldest first."""
        ...

    def poll(self) -> list[cpb.JobEvent]:
        """After a short wait, the events not returned yet."""
        ...

    def close(self) -> None: ...


def _job_id(value: str) -> str:
    """The canonical form of a job id (the Kafka message key is that form), or a usage error."""
    if not value:
        return ""
    try:
        return str(parse_uuid(value, "job id"))
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--job") from None


def _queue(value: str) -> str:
    if not value:
        return ""
    try:
        return check_queue_name(value)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--queue") from None


@app.command("tail", help=_TAIL_HELP)
def tail(
    ctx: typer.Context,
    job: Annotated[
        str, typer.Option("--job", "-j", metavar="ID", help="Only this job's events.")
    ] = "",
    queue: Annotated[
        str, typer.Option("--queue", "-q", metavar="QUEUE", help="Only events of this queue.")
    ] = "",
    lines: Annotated[
        int,
        typer.Option(
            "--lines", "-n", min=1, max=MAX_LINES, help="How many of the last events to print."
        ),
    ] = 20,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing events as they happen, until Ctrl-C."),
    ] = False,
    kafka: Annotated[
        str | None,
        typer.Option(
            "--kafka",
            metavar="BOOTSTRAP_SERVERS",
            help="Read from these Kafka brokers (host:port, comma-separated) instead of jq-server.",
        ),
    ] = None,
    topic_prefix: Annotated[
        str | None,
        typer.Option(
            "--topic-prefix",
            metavar="PREFIX",
            help="With --kafka: jq-server's kafka.topic_prefix (default: the configured one).",
        ),
    ] = None,
) -> None:
    """Print lifecycle events (see _TAIL_HELP)."""
    job_id, queue_name = _job_id(job), _queue(queue)
    if topic_prefix is not None and kafka is None:
        raise typer.BadParameter("is only used with --kafka", param_hint="--topic-prefix")
    state = CtlState.of(ctx)
    source = _open_source(state, kafka, topic_prefix, job_id, queue_name, follow)
    out = EventPrinter(state.printer, follow=follow)
    try:
        out.first(source.first(lines))
        while follow:
            out.more(source.poll())
    except KeyboardInterrupt:
        # Ctrl-C is how a follower is meant to end: exit 0 without a word (cli.run reports an
        # interrupted one-shot command as one).
        if not follow:
            raise
    finally:
        source.close()


def _open_source(
    state: CtlState,
    kafka: str | None,
    topic_prefix: str | None,
    job_id: str,
    queue: str,
    follow: bool,
) -> EventSource:
    if kafka is None:
        from jobq.ctl.server_events import ServerEvents

        return ServerEvents(state.client(), job_id=job_id, queue=queue, follow=follow)
    # Imported here: confluent-kafka loads librdkafka, which only --kafka needs.
    from jobq.ctl.kafka_events import KafkaEvents

    settings = load_kafka_settings(state.options, kafka, topic_prefix)
    return KafkaEvents(settings, timeout_s=state.settings.timeout_s, job_id=job_id, queue=queue)
