"""`jq-server`: the control plane (SPEC §1, §9)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from jobq.domain.errors import JobqError
from jobq.observability.logging_setup import get_logger
from jobq.server.app import run_server
from jobq.server.listeners import listener_problems
from jobq.startup import (
    base_parser,
    fail,
    load_program_settings,
    parse,
    start_logging,
    start_tracing,
)

PROG = "jq-server"


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(
        PROG,
        "jobq control plane: gRPC API, dispatcher, recovery monitors, health and metrics. "
        "With no configuration it runs on an embedded PostgreSQL.",
    )
    parser.add_argument("--grpc-port", type=int, metavar="PORT", help="gRPC port (grpc.port)")
    parser.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="Prometheus port (metrics.port)"
    )
    parser.add_argument(
        "--health-port", type=int, metavar="PORT", help="/healthz /readyz port (health.port)"
    )
    parser.add_argument(
        "--dashboard-port",
        type=int,
        metavar="PORT",
        help="dashboard and /api/v1 port (dashboard.port; 0: off)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow non-loopback addresses with no authentication configured (grpc.insecure); "
        "only on a network you trust",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check connectivity to PostgreSQL, Redis and Kafka, print one line each, exit "
        "0 only if every configured one answers",
    )
    args = parse(parser, argv)
    loaded = load_program_settings(
        PROG,
        args,
        {
            "grpc.port": args.grpc_port,
            "metrics.port": args.metrics_port,
            "health.port": args.health_port,
            "dashboard.port": args.dashboard_port,
            "grpc.insecure": args.insecure,
        },
    )
    problems = listener_problems(loaded.settings)
    if problems:  # a configuration mistake: refused before anything starts, like the others
        fail(PROG, "\n".join(problems))
    start_logging(PROG, loaded)
    if args.dry_run:
        # Imported only for a dry run: its probes load the Redis and Kafka clients.
        from jobq.server.dry_run import dry_run

        return asyncio.run(dry_run(loaded.settings, sys.stdout))
    start_tracing(PROG)
    try:
        asyncio.run(run_server(loaded.settings))
    except JobqError as exc:
        # Expected failures (unreachable database, a tampered migration) are one clear line.
        get_logger("jobq.server").error(str(exc), action="server.failed")
        return 1
    except Exception:
        # Anything else is a bug: one JSON line with the exception, for the operator's eyes.
        get_logger("jobq.server").exception("unexpected error", action="server.crashed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
