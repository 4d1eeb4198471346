"""Cancels and progress in the worker, with real executors: the job runner stops a cancelled
job the way its kind allows (a command's process group, an `async def` handler's task, a sync
handler's flag then abandonment) and reports it CANCELLED; progress reaches the sender,
coalesced, and the last value goes before the result."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from support import sample_tasks
from support.fake_clock import FakeClock

from jobq.config import WorkerSettings
from jobq.domain.payload import CommandSpec
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.running_job import CurrentJob
from jobq.worker.command_executor import CommandExecutor
from jobq.worker.executor import JobExecutor
from jobq.worker.job_runner import JobRunner
from jobq.worker.job_user import AS_WORKER
from jobq.worker.progress_sender import ProgressSender
from jobq.worker.registration import Registration
from jobq.worker.reporter import PendingResult, ProgressUnsupported, Reporter
from jobq.worker.server_contact import ServerContact

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent

TASKS = "support.e2e_tasks"


class CapturingReporter(Reporter):
    """Keeps what the runner reports (and progress sent), in order, instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[object] = []
        self.reported = asyncio.Event()

    def result(self, item: PendingResult) -> asyncio.Future[None]:
        self.sent.append(item)
        self.reported.set()
        return super().result(item)

    @property
    def is_connected(self) -> bool:
        return True

    async def send_progress(self, items: list[pb.JobProgress]) -> pb.ReportProgressResponse:
        self.sent.extend(items)
        return pb.ReportProgressResponse()

    def last_result(self) -> PendingResult:
        [result] = [item for item in self.sent if isinstance(item, PendingResult)]
        return result


def runner(
    reporter: CapturingReporter, *, grace_s: float = 5.0, progress: bool = True
) -> JobRunner:
    clock = FakeClock()
    contact = ServerContact(clock)
    contact.learn_timeout(600.0, 0)
    contact.answered(clock())
    executor = JobExecutor(
        imports=(TASKS, "support.sample_tasks"),
        allowed_commands=("*",),
        max_output_bytes=4096,
        job_user=AS_WORKER,
        cancel_grace_s=grace_s,
    )
    return JobRunner(
        executor,
        reporter,
        WorkerMetrics(),
        contact,
        Registration(WorkerSettings(), contact, clock),
        concurrency=4,
        clock=clock,
        progress=ProgressSender(reporter) if progress else None,
    )


def assignment(payload: object, job_id: str = "job-1") -> pb.JobAssignment:
    return pb.JobAssignment(
        job_id=job_id, attempt=1, claim_id="claim", payload=json.dumps(payload).encode()
    )


async def wait_until(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def exists(path: str) -> bool:
    return Path(path).exists()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def read_pids(path: Path) -> list[int]:
    text = path.read_text() if path.exists() else ""
    return [int(word) for word in text.split()]


async def test_a_cancelled_command_loses_its_whole_process_group(tmp_path: Path) -> None:
    reporter = CapturingReporter()
    jobs = runner(reporter)
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! $$ > {pids}; wait"
    jobs.start(assignment({"command": ["sh", "-c", script]}))
    await wait_until(lambda: len(read_pids(pids)) == 2)
    assert jobs.cancel("job-1", 1)
    assert not jobs.cancel("job-1", 1)  # heard twice (stream and heartbeat): once is enough
    await asyncio.wait_for(reporter.reported.wait(), 10)
    result = reporter.last_result()
    assert result.outcome == pb.JOB_OUTCOME_CANCELLED
    assert result.error_message == "cancelled: stopped by SIGTERM"
    for pid in read_pids(pids):  # the shell and its background child
        await wait_until(lambda pid=pid: gone(pid))


async def test_a_command_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    reporter = CapturingReporter()
    jobs = runner(reporter, grace_s=0.3)
    pid_file = tmp_path / "pid"
    script = f"trap '' TERM; echo $$ > {pid_file}; while :; do sleep 1; done"
    jobs.start(assignment({"command": ["sh", "-c", script]}))
    await wait_until(lambda: read_pids(pid_file))
    started = time.monotonic()
    jobs.cancel("job-1", 1)
    await asyncio.wait_for(reporter.reported.wait(), 10)
    assert time.monotonic() - started >= 0.3
    assert reporter.last_result().error_message == "cancelled: stopped by SIGKILL"
    await wait_until(lambda: gone(read_pids(pid_file)[0]))


async def test_an_async_handler_is_cancelled_at_its_await(tmp_path: Path) -> None:
    reporter = CapturingReporter()
    jobs = runner(reporter)
    marker = tmp_path / "async"
    jobs.start(assignment({"handler": f"{TASKS}:sleep_until_cancelled", "args": [str(marker)]}))
    await wait_until(marker.exists)
    jobs.cancel("job-1", 1)
    await asyncio.wait_for(reporter.reported.wait(), 5)
    result = reporter.last_result()
    assert (result.outcome, result.error_message) == (
        pb.JOB_OUTCOME_CANCELLED,
        "cancelled: its task was cancelled",
    )
    assert exists(f"{marker}.cancelled")


async def test_a_sync_handler_sees_the_flag_and_returns(tmp_path: Path) -> None:
    reporter = CapturingReporter()
    jobs = runner(reporter)
    marker = tmp_path / "sync"
    jobs.start(assignment({"handler": f"{TASKS}:cancellable_loop", "args": [str(marker)]}))
    await wait_until(marker.exists)
    assert marker.read_text() == "job-1 1"  # jobq.current_job() inside the thread
    jobs.cancel("job-1", 1)
    await asyncio.wait_for(reporter.reported.wait(), 5)
    result = reporter.last_result()
    # It returned a value, but after the cancel reached it: the job was cancelled.
    assert (result.outcome, result.error_message) == (
        pb.JOB_OUTCOME_CANCELLED,
        "cancelled: ended after the cancel",
    )
    assert exists(f"{marker}.seen")


@pytest.fixture
def released() -> Any:
    sample_tasks.RELEASE.clear()
    sample_tasks.STARTED.clear()
    yield
    sample_tasks.RELEASE.set()


@pytest.mark.usefixtures("released")
async def test_a_sync_handler_that_ignores_the_flag_is_abandoned_after_the_grace() -> None:
    reporter = CapturingReporter()
    jobs = runner(reporter, grace_s=0.2)
    handler = "support.sample_tasks:block_until_released"
    jobs.start(assignment({"handler": handler, "args": [30]}))
    await wait_until(sample_tasks.STARTED.is_set)
    started = time.monotonic()
    jobs.cancel("job-1", 1)
    await asyncio.wait_for(reporter.reported.wait(), 5)
    assert time.monotonic() - started >= 0.2
    result = reporter.last_result()
    assert (result.outcome, result.error_message) == (
        pb.JOB_OUTCOME_CANCELLED,
        "cancelled: the handler did not return within 0.2s; its thread was abandoned",
    )
    assert jobs.running == {}  # the job is over for the worker; its thread runs on


async def test_a_job_waiting_for_a_slot_is_cancelled_before_it_starts(tmp_path: Path) -> None:
    reporter = CapturingReporter()
    jobs = runner(reporter)
    jobs._slots = asyncio.Semaphore(0)  # no slot will come
    jobs.start(assignment({"command": ["true"]}))
    await asyncio.sleep(0)
    jobs.cancel("job-1", 1)
    await asyncio.wait_for(reporter.reported.wait(), 5)
    assert reporter.last_result().outcome == pb.JOB_OUTCOME_CANCELLED


async def test_an_unknown_attempt_is_not_cancelled() -> None:
    jobs = runner(CapturingReporter())
    assert not jobs.cancel("nobody", 1)


async def test_a_commands_progress_lines_are_read_from_its_descriptor() -> None:
    job = CurrentJob("job-1", 1)
    executor = CommandExecutor(allowed_commands=("*",), max_output_bytes=4096, job_user=AS_WORKER)
    # POSIX sh redirects single-digit descriptors only: /proc/self/fd/N names any.
    out = "> /proc/self/fd/$JOBQ_PROGRESS_FD"
    script = (
        f'echo "0.25 a quarter" {out}; echo "not a number" {out}; echo "1.5 too much" {out};'
        f' printf "0.75 three quarters\\n" {out}; echo done'
    )
    result = await executor.run(CommandSpec(argv=("sh", "-c", script)), 10, job=job)
    assert (result.success, result.result) == (True, b"done\n")
    assert job.take_progress() == (0.75, "three quarters")


async def test_a_command_without_a_job_gets_no_descriptor() -> None:
    executor = CommandExecutor(allowed_commands=("*",), max_output_bytes=4096, job_user=AS_WORKER)
    result = await executor.run(
        CommandSpec(argv=("sh", "-c", 'echo "${JOBQ_PROGRESS_FD-none}"')), 10
    )
    assert result.result == b"none\n"


async def test_progress_is_coalesced_and_the_last_value_goes_before_the_result() -> None:
    reporter = CapturingReporter()
    jobs = runner(reporter)
    jobs.start(assignment({"handler": "support.sample_tasks:add", "args": [1, 2]}))
    [job] = jobs.running.values()
    for step in range(1, 101):  # a chatty handler: only the latest value is kept
        job.control.progress(step / 100, f"{step} of 100")
    await asyncio.wait_for(reporter.reported.wait(), 5)
    progress, result = reporter.sent
    assert isinstance(progress, pb.JobProgress)
    assert (progress.job_id, progress.fraction, progress.message) == ("job-1", 1.0, "100 of 100")
    assert isinstance(result, PendingResult)
    assert result.outcome == pb.JOB_OUTCOME_SUCCEEDED


async def test_the_sender_sends_each_jobs_latest_value_once() -> None:
    reporter = CapturingReporter()
    sender = ProgressSender(reporter)
    one, two = CurrentJob("a", 1, "c1", sender.mark), CurrentJob("b", 2, "c2", sender.mark)
    one.progress(0.1)
    one.progress(0.2, "two tenths")
    two.progress(0.9)
    await sender.send_marked()
    assert [(p.job_id, p.attempt, p.claim_id, p.fraction, p.message) for p in reporter.sent] == [
        ("a", 1, "c1", 0.2, "two tenths"),
        ("b", 2, "c2", 0.9, ""),
    ]
    await sender.send_marked()  # nothing new: nothing sent
    assert len(reporter.sent) == 2


async def test_an_older_server_without_progress_reports_is_told_nothing_more() -> None:
    class OldServer(CapturingReporter):
        calls = 0

        async def send_progress(self, items: list[pb.JobProgress]) -> pb.ReportProgressResponse:
            self.calls += 1
            raise ProgressUnsupported("Method not found!")

    reporter = OldServer()
    sender = ProgressSender(reporter)
    job = CurrentJob("a", 1, "c", sender.mark)
    job.progress(0.5)
    await sender.send_marked()
    job.progress(0.6)
    await sender.send_marked()
    await sender.flush(job)
    assert reporter.calls == 1
