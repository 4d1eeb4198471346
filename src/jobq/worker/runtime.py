"""The worker's life, wired: sessions, jobs, reports, the contact watch, supervision, shutdown.

`WorkerRuntime` builds the parts; each part lives in a module of its own:

- `registration.py`: who this process is to the server (worker id, incarnation, interval);
- `session.py`: connect, register, receive jobs and heartbeat, reconnect with backoff;
- `heartbeats.py`: one session's heartbeats, and the commands their answers carry;
- `job_runner.py`: start, run, report and stop jobs (the one owner of the running jobs);
- `reporter.py`: deliver acknowledgements and results across reconnects;
- `contact_watch.py`: stop jobs before the server can declare this worker lost;
- `shutdown.py`: why the worker stops, and the drain, abandon and goodbye;
- `task_supervisor.py`: keeps the long-lived loops running, or stops the worker loudly.

Dependencies point one way: each part is built only from parts that already exist (the
supervisor, the reporter, the job runner, the heartbeats, `Shutdown`, the contact watch, the
session loop, in that order), and a lower part never needs a higher one to be built. News that
travels up (a start the server refused, a loop given up on, the server's SHUTDOWN command, its
refusal of this process) goes through subscriptions the higher part makes on the lower ones
when it is built: the job runner on the reporter, `Shutdown` on the supervisor, the reporter
and the heartbeats. All are made before `run` starts a loop, so none of that news goes unheard.

Jobs run in tasks of their own, independent of the connection: a server restart ends the
session, the worker reconnects and re-registers under the same id, and running jobs carry on;
their results wait in the reporter until delivered.

No part of the worker dies silently. The loops that outlive a session (the reporter, the
contact watch, the heartbeats kept through a drain, and the loops the composition root hands
over with `supervise`: the job guardian's watch, the loop watchdog's thread) run under one
`TaskSupervisor`; the session's own loops (receive, heartbeats) are watched together by the
session, whose crashes are restarted within a `RestartBudget`. A loop that cannot be kept
running stops the worker: its jobs are interrupted at once, it deregisters, and `run` returns
1. While a loop is down, `ready` says so.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from jobq.config import WorkerSettings
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import WorkerMetrics
from jobq.worker.clock import Clock
from jobq.worker.connection import PLAINTEXT, WorkerCredentials
from jobq.worker.contact_watch import EXIT_CONTACT_LOST, ContactWatch
from jobq.worker.executor import JobExecutor
from jobq.worker.heartbeats import Heartbeats
from jobq.worker.job_runner import JobRunner
from jobq.worker.progress_sender import ProgressSender
from jobq.worker.registration import Registration
from jobq.worker.reporter import Reporter
from jobq.worker.server_contact import ServerContact
from jobq.worker.session import SessionLoop
from jobq.worker.shutdown import EXIT_SUPERSEDED, Shutdown
from jobq.worker.task_supervisor import DEFAULT_POLICY, RestartPolicy, TaskSupervisor

__all__ = ["EXIT_CONTACT_LOST", "EXIT_SUPERSEDED", "WorkerRuntime"]

log = get_logger("jobq.worker")


class WorkerRuntime:
    """One worker process's runtime: `run` it, `request_stop` it, ask it if it is `ready`."""

    def __init__(
        self,
        settings: WorkerSettings,
        executor: JobExecutor,
        metrics: WorkerMetrics,
        credentials: WorkerCredentials = PLAINTEXT,
        *,
        supervision: RestartPolicy = DEFAULT_POLICY,
        clock: Clock = time.monotonic,
    ) -> None:
        """`credentials` (TLS, client certificate, token) go with every channel it opens;
        `supervision` says how often a failing loop or session is restarted; `clock` is the
        one every part compares times by."""
        self._background: dict[str, Callable[[], Awaitable[None]]] = {}
        self._started = False
        self.contact = ServerContact(clock)
        self._registration = Registration(settings, self.contact, clock)
        # Each part is built only from the parts above it. News going the other way is heard
        # through subscriptions the later part makes itself when built (see the docstring).
        self._supervisor = TaskSupervisor(supervision)
        self._reporter = Reporter()
        self._progress = ProgressSender(self._reporter)
        self.jobs = JobRunner(
            executor,
            self._reporter,
            metrics,
            self.contact,
            self._registration,
            settings.concurrency,
            clock,
            progress=self._progress,
        )
        self._heartbeats = Heartbeats(self._registration, self.contact, self.jobs.held, clock=clock)
        self._heartbeats.on_cancel(self.jobs.cancel)
        self._shutdown = Shutdown(
            settings,
            credentials,
            self._registration,
            self.jobs,
            self._reporter,
            self._heartbeats,
            self._supervisor,
        )
        self._contact_watch = ContactWatch(
            self.contact, self.jobs, executor.unstoppable_running, self._registration
        )
        self._sessions = SessionLoop(
            settings,
            credentials,
            self._registration,
            self._reporter,
            self.jobs,
            self._heartbeats,
            metrics,
            self._shutdown.stop,
            on_superseded=self._shutdown.supersede,
            on_give_up=self._shutdown.give_up,
            policy=supervision,
        )

    @property
    def worker_id(self) -> str:
        """The configured id, then the one the server registered this worker under."""
        return self._registration.worker_id

    @property
    def exit_process(self) -> Callable[[int], object]:
        """How the worker exits when it must (replaced in tests)."""
        return self._contact_watch.exit_process

    @exit_process.setter
    def exit_process(self, exit_process: Callable[[int], object]) -> None:
        self._contact_watch.exit_process = exit_process

    def supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop()` under the worker's supervisor while the worker runs, as the task
        `name` (a loop of the composition root: the job guardian's watch, the loop watchdog's
        thread). Call it before `run`."""
        if self._started:
            raise RuntimeError(f"the {name} loop must be handed over before the worker runs")
        if name in self._background:
            raise ValueError(f"a loop named {name!r} is already supervised")
        self._background[name] = loop

    def request_stop(self) -> None:
        """SIGTERM/SIGINT or a SHUTDOWN command: finish gracefully."""
        self._shutdown.request_stop()

    async def run(self) -> int:
        """Serve until asked to stop, then drain, deregister and return the exit code: 0, or 1
        when a loop kept failing and the worker stopped itself, or EXIT_SUPERSEDED when a
        newer process registered under its worker id (no drain, no goodbye)."""
        self._started = True
        self._supervisor.start("reporter", self._reporter.run)
        self._supervisor.start("progress", self._progress.run)
        self._supervisor.start("watchdog", self._contact_watch.run)
        for name, loop in self._background.items():
            self._supervisor.start(name, loop)
        try:
            kept = await self._sessions.serve()
            await self._shutdown.finish(kept)
        finally:
            await self._supervisor.stop()
        if self._shutdown.superseded:
            return EXIT_SUPERSEDED
        if self._shutdown.failure:
            log.error(
                "worker stopped after a failure",
                action="worker.failed",
                worker_id=self.worker_id,
                reason=self._shutdown.failure,
            )
            return 1
        return 0

    def loop_stall_limit_s(self) -> float:
        """How long the event loop may stay blocked (a handler calling blocking code in an
        `async def`) before the worker must exit (`LoopWatchdog`)."""
        return self.contact.stall_limit_s(self._registration.heartbeat_s)

    async def ready(self) -> tuple[bool, str]:
        """For /readyz: connected to a server, every supervised loop running, and not
        shutting down."""
        if self._shutdown.failure:
            return False, f"stopping: {self._shutdown.failure}"
        if self._shutdown.stop.is_set():
            return False, "shutting down"
        down = self._supervisor.down()
        if down:
            return False, "; ".join(f"{name} task down ({why})" for name, why in down.items())
        if not self._reporter.is_connected:
            return False, "not connected to jq-server"
        return True, "ready"
