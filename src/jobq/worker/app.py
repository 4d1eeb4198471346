"""jq-worker's composition root: executor, runtime, metrics and health endpoints, signals.

`prepare_worker` makes every start-up decision that can fail on the configuration (who command
jobs run as, the credentials for jq-server, which listeners may open), so a mistake stops the
worker before anything starts; `run_worker` then hardens the process and wires the parts.

A worker that may run command jobs starts its job guardian first (`job_guardian.py`: their
processes die with the worker, however it dies), before any gRPC channel exists; its watch runs
under the runtime's supervisor, and it is stopped last, once no job runs any more.

While the runtime runs, a `LoopWatchdog` thread watches the event loop: a loop blocked past the
runtime's `loop_stall_limit_s` (an `async def` handler calling blocking code) ends the process
with EXIT_LOOP_BLOCKED, which takes its command jobs down with it (`loop_watchdog.py` says why).
Its thread is kept running by the runtime's supervisor too, like the guardian's watch.
"""

from __future__ import annotations

import asyncio
import signal

from jobq.config import Settings
from jobq.config.exposure import WORKER_CREDENTIALS, exposure_problems, is_loopback
from jobq.domain.errors import ConfigError
from jobq.domain.records import record
from jobq.observability.http_endpoints import HttpEndpoints, health_routes, metrics_routes
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import WorkerMetrics
from jobq.worker.child_watcher import watch_children_with_pidfd
from jobq.worker.connection import WorkerCredentials, load_credentials
from jobq.worker.executor import JobExecutor
from jobq.worker.hardening import make_non_dumpable
from jobq.worker.job_guardian import NO_GUARD, JobGuardian
from jobq.worker.job_user import JobUser, resolve_job_user
from jobq.worker.loop_watchdog import LoopWatchdog
from jobq.worker.runtime import WorkerRuntime

log = get_logger("jobq.worker")


@record
class WorkerSetup:
    """The start-up decisions `prepare_worker` took from the configuration."""

    job_user: JobUser
    credentials: WorkerCredentials


def prepare_worker(settings: Settings) -> WorkerSetup:
    """Check and resolve what the configuration asks for, before anything starts.

    Raises:
        ConfigError: one line per problem, naming the setting.
    """
    cfg = settings.worker
    job_user = resolve_job_user(
        cfg.run_as_user, cfg.run_as_group, allow_root_jobs=cfg.allow_root_jobs
    )
    credentials = load_credentials(cfg)
    listeners = [
        (name, host)
        for name, host, port in (
            ("health.host", settings.health.host, cfg.health_port),
            ("metrics.host", settings.metrics.host, cfg.metrics_port),
        )
        if port != 0
    ]
    problems = exposure_problems(
        listeners,
        authenticated=credentials.authenticated,
        insecure=settings.grpc.insecure,
        credentials=WORKER_CREDENTIALS,
    )
    if problems:
        raise ConfigError("\n".join(problems))
    return WorkerSetup(job_user, credentials)


async def run_worker(settings: Settings, setup: WorkerSetup | None = None) -> int:
    """Run the worker until SIGTERM/SIGINT or a SHUTDOWN command; returns the exit code.

    Raises:
        ConfigError: see `prepare_worker` (when `setup` is not given), or a module named by
            `worker.imports` cannot be imported.
    """
    # First, before any job can run: a job running as this user must not be able to read our
    # environment or memory through /proc.
    make_non_dumpable()
    watch_children_with_pidfd()  # command jobs' exits without a thread each
    setup = setup or prepare_worker(settings)
    cfg = settings.worker
    _log_decisions(settings, setup)
    # Python handlers run inside the worker and die with it; only command jobs need a guardian.
    guardian = JobGuardian() if cfg.allowed_commands and not setup.job_user.refusal else None
    if guardian is not None:
        await guardian.start()
    try:
        executor = JobExecutor(
            imports=cfg.imports,
            allowed_commands=cfg.allowed_commands,
            max_output_bytes=cfg.max_output_bytes,
            job_user=setup.job_user,
            guard=guardian or NO_GUARD,
            cancel_grace_s=cfg.cancel_grace_s,
        )
        metrics = WorkerMetrics()
        runtime = WorkerRuntime(cfg, executor, metrics, setup.credentials)
        watchdog = LoopWatchdog(runtime.loop_stall_limit_s)
        runtime.supervise("loop watchdog", watchdog.keep_running)
        if guardian is not None:
            runtime.supervise("job guardian", guardian.keep_running)
        # Watching from now on, not only once the runtime's supervisor takes it over.
        watchdog.start(asyncio.get_running_loop())
        try:
            return await _serve(settings, runtime, metrics)
        finally:
            watchdog.stop()
    finally:
        if guardian is not None:
            await guardian.stop()


async def _serve(settings: Settings, runtime: WorkerRuntime, metrics: WorkerMetrics) -> int:
    """Signals and endpoints around `runtime.run()`."""
    cfg = settings.worker
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.request_stop)
    endpoints: list[HttpEndpoints] = []
    if cfg.health_port:
        endpoints.append(
            HttpEndpoints(settings.health.host, cfg.health_port, health_routes(runtime.ready))
        )
    if cfg.metrics_port:
        endpoints.append(
            HttpEndpoints(settings.metrics.host, cfg.metrics_port, metrics_routes(metrics.render))
        )
    for endpoint in endpoints:
        await endpoint.start()
    try:
        return await runtime.run()
    finally:
        for endpoint in endpoints:
            await endpoint.stop()


def _log_decisions(settings: Settings, setup: WorkerSetup) -> None:
    """One line each for the start-up decisions an operator should know about."""
    cfg = settings.worker
    job_user, credentials = setup.job_user, setup.credentials
    if cfg.allowed_commands and job_user.refusal:
        log.warning(job_user.refusal, action="worker.root_jobs_refused")
    elif cfg.allowed_commands and job_user.uid is not None:
        log.info(
            "command jobs run as another user",
            action="worker.run_as",
            user=job_user.name,
            uid=job_user.uid,
            gid=job_user.gid,
        )
    host = cfg.server_addr.rsplit(":", 1)[0]
    if credentials.token and not credentials.tls and not is_loopback(host):
        log.warning(
            "the bearer token is sent without TLS; set worker.tls_ca to encrypt the connection",
            action="worker.token_in_plaintext",
            server=cfg.server_addr,
        )
