"""Command jobs are opt-in, run as worker.run_as_user on a root worker, are refused on a root
worker without one, and never see a payload's loader variables; against real child processes.

The tests run as root (here and in CI); those about switching users skip when they do not."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from jobq.domain.payload import CommandSpec
from jobq.worker.command_executor import COMMANDS_OFF, CommandExecutor
from jobq.worker.execution_result import ExecutionResult, refusal
from jobq.worker.executor import JobExecutor
from jobq.worker.job_user import AS_WORKER, ROOT_REFUSAL, JobUser, resolve_job_user

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching users needs root; the tests do not run as root"
)


def executor(allowed: tuple[str, ...], job_user: JobUser = AS_WORKER) -> CommandExecutor:
    return CommandExecutor(allowed_commands=allowed, max_output_bytes=65536, job_user=job_user)


async def run(command: CommandExecutor, *argv: str, **fields: Any) -> ExecutionResult:
    return await command.run(CommandSpec(argv=argv, **fields), 30.0)


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this system has no user 'nobody'")


async def test_an_empty_allow_list_refuses_every_command_job(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = await run(executor(()), "touch", str(marker))
    assert result == refusal(COMMANDS_OFF)
    assert "worker.allowed_commands" in result.error_message
    assert not marker.exists()


async def test_a_star_allows_any_executable() -> None:
    for allowed in (("*",), ("echo", "*")):
        result = await run(executor(allowed), "printf", "%s", "any")
        assert result == ExecutionResult(success=True, result=b"any")


async def test_a_missing_program_is_not_a_refusal() -> None:
    # Another worker may have it: an ordinary failure, retried by the server.
    result = await run(executor(("*",)), "jobq-no-such-program")
    assert result == ExecutionResult(
        success=False, error_message="command not found: jobq-no-such-program"
    )


@needs_root
async def test_a_job_runs_as_the_job_user_with_its_home_and_no_other_groups(
    nobody: pwd.struct_passwd,
) -> None:
    job_user = resolve_job_user("nobody", "", allow_root_jobs=False)
    script = 'id -u; id -g; id -G; printf "%s\\n" "$HOME"'
    result = await run(executor(("*",), job_user), "sh", "-c", script, cwd="/")
    assert result.success, result.error_message
    uid, gid, groups, home = result.result.decode().splitlines()
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)
    assert groups.split() == [str(nobody.pw_gid)]  # root's supplementary groups are gone
    assert home == nobody.pw_dir


@needs_root
async def test_a_job_user_cannot_read_what_only_root_may(
    nobody: pwd.struct_passwd, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    job_user = resolve_job_user("nobody", "", allow_root_jobs=False)
    result = await run(executor(("cat",), job_user), "cat", str(secret), cwd="/")
    assert not result.success
    assert not result.refused
    assert "Permission denied" in result.error_message
    assert b"s3cret" not in result.result


@needs_root
async def test_a_root_worker_without_a_job_user_refuses_unless_root_jobs_are_allowed() -> None:
    refusing = resolve_job_user("", "", allow_root_jobs=False)
    result = await run(executor(("*",), refusing), "id", "-u")
    assert result == refusal(ROOT_REFUSAL)
    allowed = resolve_job_user("", "", allow_root_jobs=True)
    as_root = await run(executor(("*",), allowed), "id", "-u")
    assert as_root == ExecutionResult(success=True, result=b"0\n")


async def test_a_payload_setting_a_loader_variable_never_reaches_a_child(tmp_path: Path) -> None:
    """The server refuses such payloads at submit; a worker refuses them again, as a refusal
    (dead-lettered at once), before any process starts."""
    jobs = JobExecutor(
        imports=(), allowed_commands=("*",), max_output_bytes=1024, job_user=AS_WORKER
    )
    marker = tmp_path / "ran"
    for name in ("LD_PRELOAD", "LD_LIBRARY_PATH", "BASH_ENV", "PYTHONSTARTUP"):
        payload = {"command": ["touch", str(marker)], "env": {name: str(tmp_path / "x.so")}}
        result = await jobs.run(json.dumps(payload).encode(), None)
        assert result.refused, name
        assert name in result.error_message
        assert not marker.exists()
    harmless = {"command": ["touch", str(marker)], "env": {"GREETING": "hi"}}
    assert (await jobs.run(json.dumps(harmless).encode(), None)).success
    assert marker.exists()


@needs_root
async def test_a_job_user_starts_in_its_home_or_the_root_directory(
    nobody: pwd.struct_passwd, tmp_path: Path
) -> None:
    """Not in the worker's directory, which the job user may not be able to read."""
    job_user = resolve_job_user("nobody", "", allow_root_jobs=False)
    result = await run(executor(("pwd",), job_user), "pwd")
    assert result.success, result.error_message
    assert result.result.decode().strip() == _start_directory(nobody)
    given = await run(executor(("pwd",), job_user), "pwd", cwd="/tmp")
    assert given.result.decode().strip() == "/tmp"


def _start_directory(user: pwd.struct_passwd) -> str:
    return user.pw_dir if os.path.isdir(user.pw_dir) else "/"
