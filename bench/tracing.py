"""What OpenTelemetry traces cost (issue 20): the drain with tracing on against the same drain
with it off, in the same run.

With tracing on, jq-server and jq-worker export their spans over OTLP/HTTP, as a deployment
would, to a sink in this process that decodes each request, counts its spans and answers 200:
the exporters' encoding and sending are measured, a collector's work is not. Each round submits
`--drain-jobs` no-op jobs to a server of its mode (with tracing on, the sampler decides at each
job's submit), then drains them, in a schema of its own. After a warm-up round, two modes take
three rounds each, interleaved (see ROUNDS), so drift falls on both alike:

- off: no OTEL_* variables (the default);
- on: OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.01, as production
  tracing is set up: one job in a hundred traced, the others cost only their sampling
  decision at submit (a job the sampler drops carries no context: nothing later looks at it);

then one round of a third, `all`: every job traced (the default sampler, parentbased_always_on),
to show what tracing everything costs. Figures:

- tracing_drain_off/on/all_jobs_per_s: drains timed from their first job's end to their last's
  (the worker's start-up is left out: with tracing on it imports OpenTelemetry once); off and
  on are medians; tracing_drain_on_vs_off and tracing_drain_all_vs_off are ratios to off
  (issue 20: on at most a few percent lower);
- tracing_cpu_on_vs_off, tracing_cpu_all_vs_off: jq-server's and jq-worker's CPU seconds per
  drain, against off's (medians): on a shared machine steadier than the throughput;
- tracing_worker_start_s: each mode's median time from the worker's start to the first job's
  end;
- tracing_spans_per_job_all: spans the sink received per job in the `all` round (submit, claim,
  dispatch, execute and report: 5; fewer means an exporter's queue dropped some, as
  OpenTelemetry's batch processor does when its queue is full rather than slow the program);
- tracing_drain_cpu_s: CPU seconds of jq-server and jq-worker over one drain (from its first
  job's end to its last's), per mode.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import processes as p
from bench.drain_round import DONE_COUNT, drain_round
from bench.postgres import BenchPostgres

ROUNDS = ("off", "on", "off", "off", "on", "on", "off", "all")
"""A first round off, not counted, then three of each mode in the order ABBAAB, so that each
mode's rounds sit early and late alike. Plain alternation starting off measured on at 0.83-0.90
of off, the same alternation starting on 1.01, with the same CPU per drain: where a round falls
weighed more than tracing."""
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}


class SpanSink:
    """Counts the spans OTLP/HTTP exporters send it (thread-safe)."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self._lock:
            self.spans += count


@contextmanager
def span_sink() -> Iterator[tuple[SpanSink, str]]:
    """An OTLP/HTTP endpoint on loopback that counts and drops what it is sent."""
    sink = SpanSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sink.add(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def tracing_env(mode: str, endpoint: str) -> dict[str, str]:
    if mode == "off":
        return {}
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        **(SAMPLED if mode == "on" else {}),
    }


async def _drain(
    pg: BenchPostgres,
    workdir: Path,
    mode: str,
    jobs: int,
    done_before: int,
    endpoint: str,
    concurrency: int,
) -> dict[str, float]:
    dsn = pg.dsn
    schema = f"bench_tracing_{mode}"
    traced = tracing_env(mode, endpoint)
    # Stopped (SIGTERM) as the round ends, the programs flush the spans they still hold
    # before they exit.
    async with drain_round(dsn, workdir, schema, env=traced) as round_:
        await round_.submit(jobs)
        server_process = psutil.Process(round_.servers[0].process.pid)
        started = time.perf_counter()
        worker = round_.start_worker(concurrency, traced)
        done = done_before + jobs
        # Timed (throughput and CPU) from the first job's end, not the worker's start: with
        # tracing on, jq-worker imports OpenTelemetry's SDK and exporter as it starts (a
        # fraction of a second, once), and the figures are about the drain.
        worker_process = psutil.Process(worker.process.pid)
        await round_.wait_count(DONE_COUNT, done_before + 1, at_least=True, within=120, every=0.005)
        first = time.perf_counter()
        cpu_server, cpu_worker = p.cpu_seconds([server_process]), p.cpu_seconds([worker_process])
        await round_.wait_count(DONE_COUNT, done)
        figures = {"jobs_per_s": (jobs - 1) / (time.perf_counter() - first)}
        figures["startup_s"] = first - started
        figures["cpu_server"] = p.cpu_seconds([server_process]) - cpu_server
        figures["cpu_worker"] = p.cpu_seconds([worker_process]) - cpu_worker
        return figures


async def measure_tracing(
    pg: BenchPostgres, workdir: Path, jobs: int, concurrency: int
) -> dict[str, object]:
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": [], "all": []}
    with span_sink() as (sink, endpoint):
        for mode in ROUNDS:
            done_before = len(runs[mode]) * jobs
            before = sink.spans
            runs[mode].append(
                await _drain(pg, workdir, mode, jobs, done_before, endpoint, concurrency)
            )
            runs[mode][-1]["spans"] = sink.spans - before  # all flushed: the programs exited
    runs["off"] = runs["off"][1:]  # the warm-up round
    speed = {m: statistics.median(r["jobs_per_s"] for r in runs[m]) for m in runs}
    cpu = {m: statistics.median(r["cpu_server"] + r["cpu_worker"] for r in runs[m]) for m in runs}
    return {
        "tracing_drain_off_jobs_per_s": round(speed["off"], 1),
        "tracing_drain_on_jobs_per_s": round(speed["on"], 1),
        "tracing_drain_all_jobs_per_s": round(speed["all"], 1),
        "tracing_drain_on_vs_off": round(speed["on"] / speed["off"], 3),
        "tracing_drain_all_vs_off": round(speed["all"] / speed["off"], 3),
        # None when off's CPU rounds to nothing (a tiny run: the clock ticks in 10 ms).
        "tracing_cpu_on_vs_off": round(cpu["on"] / cpu["off"], 3) if cpu["off"] else None,
        "tracing_cpu_all_vs_off": round(cpu["all"] / cpu["off"], 3) if cpu["off"] else None,
        "tracing_spans_per_job_all": round(runs["all"][-1]["spans"] / jobs, 2),
        "tracing_worker_start_s": {
            mode: round(statistics.median(r["startup_s"] for r in runs[mode]), 3) for mode in runs
        },
        "tracing_drain_cpu_s": {
            mode: {
                part: round(statistics.median(r[f"cpu_{part}"] for r in runs[mode]), 2)
                for part in ("server", "worker")
            }
            for mode in runs
        },
    }
