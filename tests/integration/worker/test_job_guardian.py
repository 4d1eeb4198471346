"""The job guardian as a real process: it kills what is registered when its pipe closes (what
the kernel does when the worker dies; tests/e2e/test_worker_death.py kills a real worker),
spares what was unregistered, finds processes that moved to another group of the job's
session, and, when its worker died (not when it stopped in order), every process marked with
the worker's `JQ_JOB_GUARD`, registered or not, even outside the job's session; it is restarted
with every running job after someone kills it, and never holds the worker's environment. And
the command executor registers each job's group for exactly as long as the group may hold a
process, and marks each job's environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
from support.proc_scan import kill_all_with, processes_with, unique_sleep

from jobq.domain.payload import CommandSpec
from jobq.worker.command_executor import CommandExecutor
from jobq.worker.guardian_process import MARKER_VARIABLE
from jobq.worker.job_guardian import GuardianError, GuardianExited, JobGuardian
from jobq.worker.job_user import AS_WORKER

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent


@pytest.fixture
def marker() -> Iterator[str]:
    value = unique_sleep()
    yield value
    kill_all_with(value)


@pytest.fixture
async def guardian() -> AsyncIterator[JobGuardian]:
    started = JobGuardian()
    await started.start()
    yield started
    await started.stop()


def job_group(*argv: str) -> subprocess.Popen[bytes]:
    """A process leading a session and group of its own, as the command executor starts jobs."""
    return subprocess.Popen(argv, start_new_session=True)


async def gone(process: subprocess.Popen[bytes], within: float = 5.0) -> int:
    async with asyncio.timeout(within):
        while process.poll() is None:
            await asyncio.sleep(0.01)
    return process.returncode


async def test_registered_groups_are_killed_when_the_pipe_closes(
    guardian: JobGuardian, marker: str
) -> None:
    job = job_group("sh", "-c", f"sleep {marker} & sleep {marker}")
    guardian.register(job.pid)
    async with asyncio.timeout(5):
        while len(processes_with(marker)) < 2:
            await asyncio.sleep(0.01)
    await guardian.stop()  # closes the pipe without unregistering, as a dying worker does
    assert await gone(job) == -signal.SIGKILL
    async with asyncio.timeout(5):
        while processes_with(marker):  # the grandchild too
            await asyncio.sleep(0.01)


async def test_unregistered_groups_are_left_alone(guardian: JobGuardian, marker: str) -> None:
    job = job_group("sleep", marker)
    guardian.register(job.pid)
    guardian.unregister(job.pid)
    await guardian.stop()
    assert job.poll() is None
    job.kill()
    job.wait()


async def test_a_process_that_moved_to_another_group_of_the_session_is_killed(
    guardian: JobGuardian, marker: str
) -> None:
    # As a shell with job control does: the child leads a group of its own, same session.
    job = job_group(
        sys.executable,
        "-c",
        f"import subprocess, time; subprocess.Popen(['sleep', '{marker}'], process_group=0); "
        "time.sleep(120)",
    )
    try:
        # The forked child carries the parent's command line (and so the marker) until it
        # execs, and joins its own group only just before: wait for the group, not the pid.
        async with asyncio.timeout(10):
            while not (moved := _group_leaders(set(processes_with(marker)) - {job.pid})):
                await asyncio.sleep(0.01)
        [leader] = moved
        assert leader != job.pid
        assert os.getsid(leader) == job.pid
        guardian.register(job.pid)
        await guardian.stop()
        await gone(job)
        async with asyncio.timeout(5):
            while processes_with(marker):
                await asyncio.sleep(0.01)
    finally:
        job.kill()
        job.wait()


def _group_leaders(pids: set[int]) -> list[int]:
    leaders = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                leaders.append(pid)
    return leaders


async def test_a_killed_guardian_is_replaced_and_told_every_running_job(
    guardian: JobGuardian, marker: str
) -> None:
    job = job_group("sleep", marker)
    guardian.register(job.pid)
    first = guardian.pid
    assert first is not None
    watch = asyncio.create_task(guardian.keep_running())
    os.kill(first, signal.SIGKILL)
    with pytest.raises(GuardianExited, match="exited with status -9"):
        await asyncio.wait_for(watch, 5)
    # The supervisor calls the loop again: a new guardian, told about the job.
    watch = asyncio.create_task(guardian.keep_running())
    async with asyncio.timeout(10):
        while guardian.pid in (None, first):
            await asyncio.sleep(0.01)
    watch.cancel()
    await asyncio.gather(watch, return_exceptions=True)
    await guardian.stop()
    assert await gone(job) == -signal.SIGKILL


# A worker reduced to its guardian: it prints the guardian's pid and its marker, then waits
# to be killed, so the guardian sees its pipe close as it does when a real worker dies.
GUARDED_PROCESS = """
import asyncio
from jobq.worker.job_guardian import JobGuardian

async def main():
    guardian = JobGuardian()
    await guardian.start()
    print("guardian", guardian.pid, guardian.job_environment["JQ_JOB_GUARD"], flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
def dying_worker() -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    """A process holding a guardian (pid, marker), for the test to SIGKILL."""
    with subprocess.Popen(
        [sys.executable, "-c", GUARDED_PROCESS], stdout=subprocess.PIPE, text=True
    ) as worker:
        try:
            assert worker.stdout is not None
            for line in worker.stdout:  # after the worker's own log lines
                if line.startswith("guardian "):
                    _, pid, marker = line.split()
                    break
            yield worker, int(pid), marker
        finally:
            worker.kill()


def running(pid: int) -> bool:
    """`pid` exists and is no zombie (an orphan's zombie may wait for a busy init)."""
    try:
        stat = _proc(pid, "stat")
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def _sessions_led(pids: set[int]) -> set[int]:
    """Those of `pids` that lead their own session (and exist)."""
    leaders = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            if os.getsid(pid) == pid:
                leaders.add(pid)
    return leaders


async def test_a_dead_workers_marked_processes_are_killed_registered_or_not(
    dying_worker: tuple[subprocess.Popen[str], int, str], marker: str
) -> None:
    worker, guardian_pid, guard = dying_worker
    marked = {"PATH": os.environ["PATH"], MARKER_VARIABLE: guard}
    # Never registered: as a job whose worker died before it wrote +PGID.
    unregistered = subprocess.Popen(["sleep", marker], env=marked, start_new_session=True)
    # Left the job's session: a marked job whose child called setsid, then the job ended.
    job = await asyncio.create_subprocess_exec("sh", "-c", f"setsid sleep {marker} &", env=marked)
    assert await job.wait() == 0
    # Not marked: no job of this worker (a marker only alike, the entry inside another
    # variable, nothing).
    spared = [
        subprocess.Popen(["sleep", marker], env=env, start_new_session=True)
        for env in ({MARKER_VARIABLE: guard[:-1]}, {"OTHER": f"{MARKER_VARIABLE}={guard}"}, {})
    ]
    known = {unregistered.pid, *(process.pid for process in spared)}
    async with asyncio.timeout(5):  # until the sh's child has become `sleep`, in a new session
        while not (detached := _sessions_led(set(processes_with(marker)) - known)):
            await asyncio.sleep(0.01)
    [detached_pid] = detached
    worker.kill()
    assert await gone(unregistered, within=2.0) == -signal.SIGKILL
    async with asyncio.timeout(2):
        while running(detached_pid):
            await asyncio.sleep(0.01)
    async with asyncio.timeout(5):  # the guardian is done: it killed all it was going to
        while running(guardian_pid):
            await asyncio.sleep(0.02)
    assert [process.poll() for process in spared] == [None] * len(spared)
    for process in spared:
        process.kill()
        process.wait()


async def test_marked_processes_outlive_a_worker_that_stops_in_order(
    guardian: JobGuardian, marker: str
) -> None:
    # A daemon a finished job left behind: spared, as at its job's own end.
    detached = subprocess.Popen(
        ["sleep", marker], env=dict(guardian.job_environment), start_new_session=True
    )
    await guardian.stop()
    await asyncio.sleep(0.5)  # longer than the guardian's rescan, had it scanned
    assert detached.poll() is None
    detached.kill()
    detached.wait()


def _proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


async def test_the_guardian_runs_apart_from_the_worker(guardian: JobGuardian) -> None:
    pid = guardian.pid
    assert pid is not None
    assert os.getsid(pid) == pid  # a kill of the worker's process group spares it
    assert _proc(pid, "environ") == b""  # none of the worker's secrets
    status = _proc(pid, "status").decode()
    [ignored] = [line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")]
    assert int(ignored, 16) & (1 << (signal.SIGTERM - 1))  # a service manager's SIGTERM


@pytest.mark.parametrize("python", ["/nonexistent/python3", "/bin/false"])
async def test_a_guardian_that_cannot_start_is_an_error(python: str) -> None:
    with pytest.raises(GuardianError, match="job guardian"):
        await JobGuardian(python).start()


Event = tuple[str, int, int]
"""(what, process group, signal): a registration, an unregistration or a killpg."""


class RecordingGuard:
    """Records registrations, in one list with the executor's killpg calls (see below)."""

    job_environment: Mapping[str, str] = {MARKER_VARIABLE: "recorded"}

    def __init__(self) -> None:
        self.events: list[Event] = []

    def register(self, pgid: int) -> None:
        os.killpg(pgid, 0)  # the group exists (raises ProcessLookupError if not)
        self.events.append(("register", pgid, 0))

    def unregister(self, pgid: int) -> None:
        self.events.append(("unregister", pgid, 0))


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> RecordingGuard:
    recording = RecordingGuard()
    killpg = os.killpg

    def recorded(pgid: int, signum: int) -> None:
        if signum:
            recording.events.append(("killpg", pgid, signum))
        killpg(pgid, signum)

    monkeypatch.setattr(os, "killpg", recorded)
    return recording


def _executor(guard: RecordingGuard) -> CommandExecutor:
    return CommandExecutor(
        allowed_commands=["*"],
        max_output_bytes=4096,
        job_user=AS_WORKER,
        kill_grace_s=0.2,
        guard=guard,
    )


async def test_the_executor_registers_each_jobs_group_until_it_is_killed(
    guard: RecordingGuard, marker: str
) -> None:
    executor = _executor(guard)
    # Ends at once, leaving a grandchild in its group: the executor kills it.
    quick = CommandSpec(argv=("sh", "-c", f"sleep {marker} & echo started"))
    assert (await executor.run(quick, None)).success
    # Times out: SIGTERM, then SIGKILL.
    assert not (await executor.run(CommandSpec(argv=("sleep", marker)), 0.2)).success
    # Cancelled by the runtime (shutdown, a lost worker).
    task = asyncio.create_task(executor.run(CommandSpec(argv=("sleep", marker)), None))
    async with asyncio.timeout(5):
        while sum(kind == "register" for kind, _, _ in guard.events) < 3:
            await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    registered = [pgid for kind, pgid, _ in guard.events if kind == "register"]
    assert len(set(registered)) == 3
    for pgid in registered:
        mine = [(kind, signum) for kind, group, signum in guard.events if group == pgid]
        assert mine[0] == ("register", 0)
        assert mine[-1] == ("unregister", 0)  # once, last ...
        assert ("killpg", signal.SIGKILL) in mine[:-1]  # ... after the group's SIGKILL
        assert mine.count(("unregister", 0)) == 1


async def test_the_executor_marks_every_jobs_environment(guard: RecordingGuard) -> None:
    # Set last: a payload cannot take its job out of the guardian's sight.
    spec = CommandSpec(
        argv=("sh", "-c", f"echo ${MARKER_VARIABLE}; sleep 0.1"),  # the guard checks its group
        env={MARKER_VARIABLE: "the payload's"},
    )
    result = await _executor(guard).run(spec, None)
    assert (result.success, result.result) == (True, b"recorded\n")
