"""`jq-worker`: the data plane (SPEC §7)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from jobq.domain.errors import ConfigError, JobqError
from jobq.startup import (
    base_parser,
    fail,
    load_program_settings,
    parse,
    start_logging,
    start_tracing,
)
from jobq.worker.app import prepare_worker, run_worker

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
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the bearer token sent to jq-server (worker.token_file; or set "
        "JQ_WORKER_TOKEN)",
    )
    parser.add_argument(
        "--tls-ca", metavar="FILE", help="CA certificate of jq-server's: use TLS (worker.tls_ca)"
    )
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="client certificate for mutual TLS (worker.tls_cert)"
    )
    parser.add_argument(
        "--tls-key", metavar="FILE", help="client private key for mutual TLS (worker.tls_key)"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow the health and metrics endpoints on non-loopback addresses without "
        "authentication (grpc.insecure); only on a network you trust",
    )
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
            "worker.token_file": args.token_file,
            "worker.tls_ca": args.tls_ca,
            "worker.tls_cert": args.tls_cert,
            "worker.tls_key": args.tls_key,
            "grpc.insecure": args.insecure,
        },
    )
    try:  # configuration mistakes: refused before anything starts, like the others (exit 2)
        setup = prepare_worker(loaded.settings)
    except ConfigError as exc:
        fail(PROG, str(exc))
    start_logging(PROG, loaded)
    start_tracing(PROG)
    try:
        return asyncio.run(run_worker(loaded.settings, setup))
    except ConfigError as exc:  # e.g. a module named by --import cannot be imported
        fail(PROG, str(exc))
    except JobqError as exc:  # e.g. a port to listen on is taken
        fail(PROG, str(exc), code=1)


if __name__ == "__main__":
    raise SystemExit(main())
