"""jq-server's composition root: chooses and wires the real implementations, runs, stops."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2

from jobq.config import Settings
from jobq.coordination.locker import Locker, NoopLocker, RedisLocker
from jobq.domain.errors import ConfigError, ServiceFailed
from jobq.domain.retry import RetryPolicy
from jobq.observability.http_endpoints import HttpEndpoints, health_routes
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import ServerMetrics
from jobq.server.admin_service import AdminServicer
from jobq.server.audit import AuditTrail
from jobq.server.authentication import Authenticator
from jobq.server.cancels import CancelRelay
from jobq.server.dependency_resolver import DependencyResolver
from jobq.server.dispatcher import Dispatcher
from jobq.server.enqueue_announcer import EnqueueAnnouncer
from jobq.server.event_capture import CaptureSwitch, capture_on
from jobq.server.event_publisher import heartbeats_to
from jobq.server.grpc_server import build_grpc_server
from jobq.server.guard import MethodHandler
from jobq.server.heartbeat_monitor import HeartbeatMonitor
from jobq.server.history_maintainer import HistoryMaintainer
from jobq.server.history_metrics import HistoryMetrics
from jobq.server.incarnations import IncarnationGate
from jobq.server.job_partition_maintainer import JobPartitionMaintainer
from jobq.server.job_service import JobServicer
from jobq.server.job_stream import JobStreams
from jobq.server.job_watch import JobWatch
from jobq.server.lifecycle import Lifecycle
from jobq.server.listeners import announce_exposure, listener_problems
from jobq.server.notifier import Notifier
from jobq.server.publisher_process import KafkaEvents, kafka_events
from jobq.server.queue_flow import QueueFlow
from jobq.server.readiness import dependency_checks, readiness_note, ready
from jobq.server.reaper import Reaper
from jobq.server.reports import ReportWriter
from jobq.server.schedule_admin import ScheduleAdmin
from jobq.server.schedule_runner import ScheduleRunner
from jobq.server.server_metrics import MetricsObserver, refresh_gauges, scrape_route
from jobq.server.service_loop import ServiceLoop, describe
from jobq.server.submission import Submitter
from jobq.server.transition_metrics import TransitionLog, TransitionMetrics
from jobq.server.undelivered import Undelivered
from jobq.server.worker_capacity import WorkerCapacity
from jobq.server.worker_service import HeartbeatHook, WorkerServicer
from jobq.storage.database import DatabaseHandle
from jobq.storage.pool import notify_channel, ping
from jobq.storage.postgres.audit import PgAuditStore
from jobq.storage.postgres.event_outbox import PgEventOutboxStore
from jobq.storage.postgres.history_partitions import PgHistoryPartitionStore
from jobq.storage.postgres.history_partman import PgHistoryPartmanStore
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.job_partitions import PgJobPartitionStore
from jobq.storage.postgres.job_watch import PgJobWatchStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.schedules import PgScheduleStore
from jobq.storage.postgres.workers import PgWorkerStore
from jobq.storage.server_storage import open_database_for_server, open_pools

if TYPE_CHECKING:
    from jobq.server.web.serve import Dashboard

log = get_logger("jobq.server")


@dataclass
class _Running:
    """Everything start() built, so stop() can take it down in order."""

    database: DatabaseHandle
    pool: asyncpg.Pool
    claim_pool: asyncpg.Pool
    grpc_server: grpc.aio.Server
    dispatcher: Dispatcher
    notifier: Notifier
    submitter: Submitter
    job_service: JobServicer
    reports: ReportWriter
    locker: Locker
    gauges: Callable[[], Awaitable[None]]
    loops: list[ServiceLoop] = field(default_factory=list)
    kafka: KafkaEvents | None = None
    http: list[HttpEndpoints] = field(default_factory=list)
    dashboard: Dashboard | None = None

    def supervised(self) -> list[ServiceLoop]:
        """Every background loop, each of which /readyz reports when it is down."""
        return [self.dispatcher.loop, self.notifier.loop, *self.loops]


class ServerApp:
    """One jq-server process: database, schema, gRPC services, dispatcher, monitors, HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.history_metrics = HistoryMetrics(self.metrics.registry)
        self.capacity = WorkerCapacity()
        # Every job state change this replica commits, in commit order per job: subscribe here.
        self.lifecycle = Lifecycle()
        self.lifecycle.subscribe(TransitionMetrics(self.metrics))
        self.lifecycle.subscribe(TransitionLog())
        self.started_at = datetime.now(UTC)
        self._health = health.aio.HealthServicer()
        self._stopping = asyncio.Event()
        self._running: _Running | None = None
        self._database: DatabaseHandle | None = None
        self.grpc_port: int | None = None
        self.health_port: int | None = None
        self.metrics_port: int | None = None
        self.dashboard_port: int | None = None
        self.authenticator = Authenticator.from_settings(settings.auth, settings.grpc)
        self.served_methods: list[str] = []
        self.failure: str | None = None
        """Why the server stopped itself (a loop gave up), or None."""

    # --- start -------------------------------------------------------------------------------

    async def start(self) -> None:
        problems = listener_problems(self.settings)
        if problems:
            raise ConfigError("\n".join(problems))
        announce_exposure(self.settings, self.authenticator)
        database = self._database = await open_database_for_server(self.settings.db)
        storage = await open_pools(database, self.settings.db)
        if self.settings.kafka.enabled:
            # Before the first RPC: every event this replica commits is captured.
            await capture_on(PgEventOutboxStore(storage.pool))
        self._running = self._wire(database, storage.pool, storage.claim_pool)
        await self._serve()

    def _wire(
        self, database: DatabaseHandle, pool: asyncpg.Pool, claim_pool: asyncpg.Pool
    ) -> _Running:
        cfg = self.settings
        sched = cfg.scheduler
        jobs, queues = PgJobStore(pool, claim_pool), PgQueueStore(pool)
        workers, events = PgWorkerStore(pool), PgJobEventStore(pool)
        maintenance = PgMaintenanceStore(pool)
        audit = AuditTrail(PgAuditStore(pool))
        observer = MetricsObserver(self.metrics)
        lifecycle = self.lifecycle

        async def probe() -> None:
            await ping(pool)

        policy = RetryPolicy(sched.retry_base_delay_s, sched.retry_max_delay_s)
        locker: Locker = (
            RedisLocker(cfg.redis.url, cfg.redis.password or None, self.metrics)
            if cfg.redis.enabled
            else NoopLocker()
        )
        outbox = PgEventOutboxStore(pool)
        kafka: KafkaEvents | None = None
        on_heartbeat: HeartbeatHook | None = None
        if cfg.kafka.enabled:
            kafka = kafka_events(cfg, database.dsn, outbox, self.metrics)
            on_heartbeat = heartbeats_to(kafka.producer.send_nowait, cfg.kafka.topic_prefix)
        capacity = self.capacity
        # Who frees slots, and who is told: WorkerCapacity alone, from the lifecycle stream
        # (jobs leaving their workers) and the workers' reports.
        lifecycle.subscribe(capacity.left)
        undelivered = Undelivered(jobs, lifecycle)
        flow = QueueFlow(queues.queues_flow_limited)
        dispatcher = Dispatcher(
            jobs,
            capacity,
            lifecycle,
            undelivered,
            batch_size=sched.batch_size,
            interval_s=sched.interval_ms / 1000,
            assignment_timeout_s=sched.assignment_timeout_s,
            locker=locker,
            flow=flow,
            on_cycle=self.metrics.scheduler_cycle_duration_seconds.observe,
        )
        submitter = Submitter(
            jobs,
            lifecycle,
            max_batch=cfg.limits.max_batch_size,
            taken_here=capacity.can_take,
            on_inserted=dispatcher.wake_for_new_jobs,
            direct=dispatcher.submit_assigned if sched.assign_at_submit else None,
        )
        reports = ReportWriter(
            jobs,
            policy,
            lifecycle,
            max_batch=cfg.limits.max_batch_size,
            on_finished=capacity.reported,
        )
        gate = IncarnationGate(workers, capacity)
        worker_servicer = WorkerServicer(
            workers,
            jobs,
            capacity,
            JobStreams(workers, jobs, capacity, undelivered, gate),
            gate,
            reports,
            lifecycle,
            undelivered,
            heartbeat_timeout_s=sched.worker_heartbeat_timeout_s,
            max_result_bytes=cfg.limits.max_payload_bytes,
            observer=observer,
            on_heartbeat=on_heartbeat,
        )
        watch = JobWatch(PgJobWatchStore(pool), lifecycle)
        schedules = PgScheduleStore(pool)
        runner = ScheduleRunner(schedules, lifecycle, on_inserted=dispatcher.wake_for_new_jobs)
        job_servicer = JobServicer(
            jobs, events, submitter, lifecycle, cfg.limits, observer, audit=audit, watch=watch
        )
        admin_servicer = AdminServicer(
            queues,
            workers,
            jobs,
            capacity,
            dependency_checks(probe, locker, redis_enabled=cfg.redis.enabled, kafka=kafka),
            self.started_at,
            observer,
            audit,
            schedules=ScheduleAdmin(schedules, audit, cfg.limits, on_change=runner.wake),
        )
        built = build_grpc_server(
            cfg.grpc,
            cfg.limits,
            self.authenticator,
            self._health,
            jobs=job_servicer,
            workers=worker_servicer,
            admin=admin_servicer,
        )
        self.grpc_port, self.served_methods = built.port, built.served
        server = built.server
        announcer = EnqueueAnnouncer(maintenance, lifecycle)
        notifier = Notifier(
            database.dsn,
            dispatcher.wake_for_new_jobs,
            channel=notify_channel(cfg.db.schema),
            on_enqueued=announcer.wake,
            on_queues=dispatcher.queues_changed,
            on_cancel=CancelRelay(capacity).on_notification,
        )
        monitor = HeartbeatMonitor(
            maintenance,
            jobs,
            timeout_s=sched.worker_heartbeat_timeout_s,
            interval_s=sched.heartbeat_check_interval_s,
            lifecycle=lifecycle,
            probe=probe,
            on_lost=self.metrics.workers_lost.inc,
        )
        resolver = DependencyResolver(
            jobs,
            lifecycle,
            sweep_interval_s=sched.dependency_sweep_interval_s,
            on_promoted=dispatcher.wake_for_new_jobs,
        )
        reaper = Reaper(
            maintenance,
            assignment_timeout_s=sched.assignment_timeout_s,
            interval_s=max(1.0, min(sched.assignment_timeout_s / 3, 10.0)),
            batch_limit=1000,
            lifecycle=lifecycle,
        )
        history = PgHistoryPartitionStore(pool)
        job_partitions = PgJobPartitionStore(pool)
        history_maintainer = HistoryMaintainer(
            history,
            retention_days=cfg.history.retention_days,
            premake_days=cfg.history.premake_days,
            interval_s=cfg.history.maintenance_interval_s,
            on_dropped=self.history_metrics.dropped.inc,
            partman=PgHistoryPartmanStore(pool) if cfg.history.pg_partman else None,
            jobs=JobPartitionMaintainer(
                job_partitions,
                retention_days=cfg.history.retention_days,
                premake_days=cfg.history.premake_days,
                on_dropped=self.history_metrics.jobs_dropped.inc,
            ),
        )

        async def gauges() -> None:
            await refresh_gauges(self.metrics, jobs, workers, kafka)
            await self.history_metrics.refresh(history, job_partitions)

        return _Running(
            database=database,
            pool=pool,
            claim_pool=claim_pool,
            grpc_server=server,
            dispatcher=dispatcher,
            notifier=notifier,
            submitter=submitter,
            job_service=job_servicer,
            reports=reports,
            locker=locker,
            loops=[
                monitor.loop,
                reaper.loop,
                resolver.loop,
                watch.loop,
                announcer.loop,
                runner.loop,
                history_maintainer.loop,
                *([] if kafka is not None else [CaptureSwitch(outbox).loop]),
            ],
            gauges=gauges,
            kafka=kafka,
            dashboard=self._dashboard(built.handlers, pool) if cfg.dashboard.port else None,
        )

    def _dashboard(self, handlers: dict[str, MethodHandler], pool: asyncpg.Pool) -> Dashboard:
        # Imported only when the dashboard is on: a server without it loads no web framework.
        from jobq.server.web.history import History
        from jobq.server.web.live import LiveFeed
        from jobq.server.web.serve import build_dashboard
        from jobq.storage.postgres.dashboard import PgDashboardStore

        return build_dashboard(
            self.settings,
            handlers,
            self.authenticator,
            LiveFeed(self.lifecycle),
            History(PgDashboardStore(pool)),
        )

    async def _serve(self) -> None:
        running = self._running
        assert running is not None
        cfg = self.settings
        if cfg.health.port:
            endpoints = HttpEndpoints(
                cfg.health.host,
                cfg.health.port,
                health_routes(lambda: self._readiness(running)),
            )
            await endpoints.start()
            self.health_port = endpoints.port
            running.http.append(endpoints)
        if cfg.metrics.port:
            endpoints = HttpEndpoints(
                cfg.metrics.host,
                cfg.metrics.port,
                {
                    "/metrics": scrape_route(
                        self.metrics, running.gauges, lambda: self._readiness(running)
                    )
                },
            )
            await endpoints.start()
            self.metrics_port = endpoints.port
            running.http.append(endpoints)
        if running.dashboard is not None:
            await running.dashboard.start()
            self.dashboard_port = running.dashboard.port
        await running.grpc_server.start()
        for loop in running.supervised():
            loop.on_give_up(self._loop_gave_up)
        running.notifier.start()
        for loop in running.loops:
            loop.start()
        running.dispatcher.start()
        if running.kafka is not None:
            running.kafka.start()
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            action="server.started",
            grpc_port=self.grpc_port,
            health_port=self.health_port,
            metrics_port=self.metrics_port,
            dashboard_port=self.dashboard_port,
        )

    async def _readiness(self, running: _Running) -> tuple[bool, str]:
        ok, why = await ready(lambda: ping(running.pool), running.supervised())
        if ok and (note := await readiness_note(running.kafka)) is not None:
            return True, f"ready; {note}"
        return ok, why

    # --- stop --------------------------------------------------------------------------------

    def _loop_gave_up(self, name: str, problem: BaseException) -> None:
        """A loop that restarting cannot fix: stop the whole server, which exits 1 (better
        than a replica that runs on without, say, its dispatcher)."""
        self.failure = f"the {name} loop kept failing ({describe(problem)}); stopping jq-server"
        self.request_stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        """Stop accepting RPCs, stop dispatch, close worker streams, drain in-flight RPCs within
        the grace period, stop the monitors, close the pool and the embedded database."""
        log.info("shutting down", action="server.stopping")
        await self._health.enter_graceful_shutdown()
        running, self._running = self._running, None
        if running is None:
            if self._database is not None:  # start-up failed after the database came up
                await self._database.close()
            return
        await running.dispatcher.stop()
        stopping = asyncio.create_task(
            running.grpc_server.stop(self.settings.grpc.graceful_shutdown_s)
        )
        await asyncio.sleep(0)  # let the server refuse new calls before the streams end
        self.capacity.close_all()
        running.job_service.close_streams()
        await stopping
        await running.submitter.drain()
        await running.reports.drain()
        if running.kafka is not None:
            await running.kafka.stop()  # the publisher gives the lease back at once
        for loop in running.loops:
            await loop.stop()
        await running.notifier.stop()
        if running.dashboard is not None:
            await running.dashboard.stop()
        for endpoints in running.http:
            await endpoints.stop()
        await running.locker.close()
        for pool in (running.claim_pool, running.pool):
            try:
                await asyncio.wait_for(pool.close(), timeout=5.0)
            except TimeoutError:  # PostgreSQL gone: don't wait for a polite goodbye
                pool.terminate()
        await running.database.close()
        log.info("stopped", action="server.stopped")


async def run_server(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    app = ServerApp(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    try:
        await app.start()
        await app.wait()
    finally:
        await app.stop()
    if app.failure is not None:
        raise ServiceFailed(app.failure)
