"""jq-worker's composition root: executor, runtime, metrics and health endpoints, signals."""

from __future__ import annotations

import asyncio
import signal

from jobq.config import Settings
from jobq.observability.http_endpoints import HttpEndpoints, health_routes, metrics_routes
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import WorkerMetrics
from jobq.worker.executor import JobExecutor
from jobq.worker.runtime import WorkerRuntime

log = get_logger("jobq.worker")


async def run_worker(settings: Settings) -> int:
    """Run the worker until SIGTERM/SIGINT or a SHUTDOWN command; returns the exit code."""
    cfg = settings.worker
    executor = JobExecutor(
        imports=cfg.imports,
        allowed_commands=cfg.allowed_commands,
        max_output_bytes=cfg.max_output_bytes,
    )
    metrics = WorkerMetrics()
    runtime = WorkerRuntime(cfg, executor, metrics)
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
