"""`jq-worker`: the data plane (SPEC §7)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from jobq.domain.errors import JobqError
from jobq.startup import base_parser, fail, load_program_settings, parse, start_logging
from jobq.worker.app import run_worker

PROG = "jq-worker"


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(
        PROG,
        "jobq worker: registers with jq-server, receives jobs over a stream and runs them "
        "(subprocess commands and Python callables) with bounded concurrency.",
    )
    parser.add_argument("--server-addr", metavar="HOST:PORT", help="jq-server address")
    parser.add_argument("--worker-id", metavar="UUID", help="stable worker id (worker.worker_id)")
    parser.add_argument("--concurrency", type=int, metavar="N", help="jobs run at once")
    parser.add_argument("--queues", metavar="Q1,Q2", help="comma-separated queues to serve")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        help="trust the functions of MODULE as handlers (repeatable)",
    )
    parser.add_argument("--metrics-port", type=int, metavar="PORT", help="worker.metrics_port")
    parser.add_argument("--health-port", type=int, metavar="PORT", help="worker.health_port")
    args = parse(parser, argv)
    loaded = load_program_settings(
        PROG,
        args,
        {
            "worker.server_addr": args.server_addr,
            "worker.worker_id": args.worker_id,
            "worker.concurrency": args.concurrency,
            "worker.queues": args.queues,
            "worker.imports": args.imports,
            "worker.metrics_port": args.metrics_port,
            "worker.health_port": args.health_port,
        },
    )
    start_logging(PROG, loaded)
    try:
        return asyncio.run(run_worker(loaded.settings))
    except JobqError as exc:  # e.g. a module named by --import cannot be imported
        fail(PROG, str(exc), code=1)


if __name__ == "__main__":
    raise SystemExit(main())
