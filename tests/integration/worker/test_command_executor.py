"""The command executor against real child processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from jobq.domain.payload import CommandSpec
from jobq.worker.command_executor import CommandExecutor
from jobq.worker.execution_result import ExecutionResult, refusal
from jobq.worker.executor import JobExecutor
from jobq.worker.job_user import AS_WORKER

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent


def executor(**overrides: Any) -> CommandExecutor:
    """Any command, run as this process's user (the tests run as root: no refusal here)."""
    options: dict[str, Any] = {
        "allowed_commands": ("*",),
        "max_output_bytes": 65536,
        "job_user": AS_WORKER,
    }
    options.update(overrides)
    return CommandExecutor(**options)


def job_executor(allowed_commands: tuple[str, ...] = ("*",)) -> JobExecutor:
    return JobExecutor(
        imports=(), allowed_commands=allowed_commands, max_output_bytes=1024, job_user=AS_WORKER
    )


async def run(*argv: str, timeout_s: float | None = 30.0, **fields: Any) -> ExecutionResult:
    return await executor().run(CommandSpec(argv=argv, **fields), timeout_s)


def gone(pid: int) -> bool:
    """True once `pid` has exited: no such process, or a zombie awaiting its reaper."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_until(condition: Any, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


# A child that starts a grandchild in its (the job's) process group and waits for it.
def group_command(pidfile: Path) -> tuple[str, ...]:
    return ("sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait")


async def test_arguments_are_passed_literally_without_a_shell() -> None:
    result = await run("printf", "%s|%s", "$HOME; echo hi", "*")
    assert result == ExecutionResult(success=True, result=b"$HOME; echo hi|*")


@pytest.fixture
def workdir(tmp_path: Path) -> str:
    """tmp_path without symlinks, as `pwd` prints it."""
    return os.path.realpath(tmp_path)


async def test_env_cwd_and_stdin_reach_the_child(workdir: str) -> None:
    result = await run(
        "sh",
        "-c",
        'printf "%s %s " "$GREETING" "$(pwd)"; cat',
        env={"GREETING": "hello"},
        cwd=workdir,
        stdin=b"from stdin",
    )
    assert result.success, result.error_message
    assert result.result == f"hello {workdir} from stdin".encode()


async def test_without_stdin_the_child_reads_end_of_file() -> None:
    result = await run("cat")
    assert result == ExecutionResult(success=True, result=b"")


async def test_stdin_larger_than_a_pipe_buffer_is_delivered() -> None:
    data = b"x" * 1_000_000
    result = await run("wc", "-c", stdin=data)
    assert result.result.strip() == b"1000000"


async def test_a_child_ignoring_its_stdin_still_completes() -> None:
    result = await run("true", stdin=b"y" * 1_000_000)
    assert result.success


async def test_the_child_gets_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JQ_DB_PASSWORD", "hunter2")
    monkeypatch.setenv("LANG", "C.UTF-8")
    result = await executor().run(CommandSpec(argv=("env",), env={"EXTRA": "1"}), 30.0)
    assert result.success, result.error_message
    variables = dict(line.split("=", 1) for line in result.result.decode().splitlines())
    assert set(variables) == {"PATH", "HOME", "LANG", "EXTRA"}
    assert variables["PATH"] == os.environ["PATH"]
    assert b"hunter2" not in result.result


async def test_stdout_beyond_the_limit_is_dropped_and_marked() -> None:
    result = await executor(max_output_bytes=1000).run(
        CommandSpec(argv=("head", "-c", "5000000", "/dev/zero")), 30.0
    )
    assert result.success
    assert result.result == b"\0" * 1000 + b"\n[truncated: 4999000 bytes dropped]"


async def test_a_non_zero_exit_is_a_failure_with_the_stderr_tail() -> None:
    script = "echo partial; head -c 10000 /dev/zero | tr '\\0' a >&2; echo ' the end' >&2; exit 3"
    result = await run("sh", "-c", script)
    assert not result.success
    assert result.result == b"partial\n"  # stdout is kept for failures too
    assert result.error_message.startswith("exit status 3; stderr: …aaa")
    assert result.error_message.endswith("aaa the end")
    assert len(result.error_message) < 2100


async def test_a_failure_without_stderr_has_only_the_status() -> None:
    assert (await run("false")).error_message == "exit status 1"


async def test_a_signal_death_names_the_signal() -> None:
    result = await run("sh", "-c", "kill -KILL $$")
    assert result.error_message == "killed by signal SIGKILL"


async def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    started = time.monotonic()
    result = await run(*group_command(pidfile), timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert result == ExecutionResult(success=False, error_message="timed out after 0.5s")
    grandchild = read_pid(pidfile)
    assert grandchild is not None
    await wait_until(lambda: gone(grandchild))


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    result = await executor(kill_grace_s=0.2).run(
        CommandSpec(argv=("sh", "-c", "trap '' TERM; echo started; sleep 300 & wait")), 0.3
    )
    assert result.error_message == "timed out after 0.3s"
    assert result.result == b"started\n"


async def test_cancellation_kills_and_reaps_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    job = asyncio.create_task(run(*group_command(pidfile), timeout_s=None))
    await wait_until(lambda: read_pid(pidfile) is not None)
    grandchild = read_pid(pidfile)
    assert grandchild is not None
    leader = psutil.Process(grandchild).ppid()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert not psutil.pid_exists(leader)  # our child was reaped before CancelledError
    await wait_until(lambda: gone(grandchild))


async def test_processes_left_behind_by_a_finished_job_are_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "straggler.pid"
    script = f"sleep 300 > /dev/null 2>&1 & echo $! > {pidfile}; echo done"
    result = await run("sh", "-c", script)
    assert result == ExecutionResult(success=True, result=b"done\n")
    straggler = read_pid(pidfile)
    assert straggler is not None
    await wait_until(lambda: gone(straggler))


async def test_a_missing_executable_is_a_failure(tmp_path: Path) -> None:
    assert (await run("jobq-no-such-program")).error_message == (
        "command not found: jobq-no-such-program"
    )
    missing = str(tmp_path / "missing")
    assert (await run(missing)).error_message == f"command not found: {missing}"


async def test_a_missing_working_directory_is_a_failure(tmp_path: Path) -> None:
    cwd = str(tmp_path / "missing")
    result = await run("pwd", cwd=cwd)
    assert result.error_message == f"working directory not found: {cwd}"


async def test_a_file_without_execute_permission_is_a_failure(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = await run(str(script))
    assert result.error_message == f"command not executable: {script} (permission denied)"


def fake_echo(directory: Path) -> Path:
    """An executable named `echo` that is not the system's."""
    path = directory / "echo"
    path.write_text("#!/bin/sh\nprintf fake\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def test_allowed_commands_restrict_what_may_start(tmp_path: Path) -> None:
    restricted = executor(allowed_commands=("echo",))
    ok = await restricted.run(CommandSpec(argv=("echo", "hi")), 30.0)
    assert ok == ExecutionResult(success=True, result=b"hi\n")
    refused = await restricted.run(CommandSpec(argv=("printf", "hi")), 30.0)
    assert refused == refusal("command not allowed: printf (not in worker.allowed_commands)")
    system_echo = shutil.which("echo")
    assert system_echo is not None
    by_path = await restricted.run(CommandSpec(argv=(system_echo, "hi")), 30.0)
    assert by_path.success
    other = str(fake_echo(tmp_path))
    elsewhere = await restricted.run(CommandSpec(argv=(other,)), 30.0)
    assert elsewhere == refusal(f"command not allowed: {other} (not in worker.allowed_commands)")


async def test_a_payload_path_cannot_redirect_an_allowed_name(tmp_path: Path) -> None:
    fake_echo(tmp_path)
    restricted = executor(allowed_commands=("echo",))
    result = await restricted.run(
        CommandSpec(argv=("echo", "real"), env={"PATH": str(tmp_path)}), 30.0
    )
    assert result.result == b"real\n"


async def test_an_allowed_path_allows_exactly_that_file(tmp_path: Path) -> None:
    script = fake_echo(tmp_path)
    restricted = executor(allowed_commands=(str(script),))
    assert (await restricted.run(CommandSpec(argv=(str(script),)), 30.0)).result == b"fake"
    refused = await restricted.run(CommandSpec(argv=("echo",)), 30.0)
    assert refused == refusal("command not allowed: echo (not in worker.allowed_commands)")


async def test_the_job_executor_applies_the_queue_ttl_unless_the_payload_sets_one() -> None:
    jobs = job_executor()
    sleeper = json.dumps({"command": ["sleep", "30"]}).encode()
    assert (await jobs.run(sleeper, 0.3)).error_message == "timed out after 0.3s"
    own = json.dumps({"command": ["sleep", "30"], "timeout_s": 0.2}).encode()
    assert (await jobs.run(own, 60.0)).error_message == "timed out after 0.2s"
    quick = json.dumps({"command": ["true"]}).encode()
    assert (await jobs.run(quick, None)).success
    assert (await jobs.run(quick, 0)).success


async def test_the_job_executor_refuses_bad_payloads() -> None:
    jobs = job_executor()
    result = await jobs.run(b'{"nothing": 1}', None)
    assert result == refusal('unsupported payload: expected an object with "command" or "handler"')
    not_json = await jobs.run(b"\xff", None)
    assert not_json.refused
    assert not_json.error_message.startswith("payload is not valid JSON")
