"""A non-dumpable process keeps its environment from other processes of its own user, and the
flag does not outlive exec; with real processes run as an unprivileged user."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from support.unprivileged import UnprivilegedPython, unprivileged_python

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent

SECRET = "jobq-hardening-s3cret"

# Prints its dumpable flag, then waits for stdin to close (the test holds it open).
HOLDER = """
import sys
from jobq.worker.hardening import is_dumpable, make_non_dumpable
if sys.argv[1] == "harden":
    assert make_non_dumpable()
print(is_dumpable(), flush=True)
sys.stdin.read()
"""


@contextmanager
def holder(python: UnprivilegedPython, mode: str) -> Iterator[subprocess.Popen[str]]:
    """A process of the unprivileged user with SECRET in its environment."""
    with subprocess.Popen(
        [python.interpreter, "-c", HOLDER, mode],
        env=python.environment(JQ_DB_PASSWORD=SECRET),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **python.popen_options(),
    ) as process:  # closes its pipes and reaps it on the way out
        try:
            yield process
        finally:
            process.kill()


def read_environ_as(python: UnprivilegedPython, pid: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cat", f"/proc/{pid}/environ"],
        env=python.environment(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        **python.popen_options(),
    )


def test_the_same_user_cannot_read_a_hardened_process_but_can_read_a_plain_one() -> None:
    python = unprivileged_python()
    with holder(python, "harden") as hardened, holder(python, "plain") as plain:
        assert hardened.stdout is not None
        assert plain.stdout is not None
        assert hardened.stdout.readline().strip() == "False"
        assert plain.stdout.readline().strip() == "True"
        refused = read_environ_as(python, hardened.pid)
        assert refused.returncode != 0
        assert "Permission denied" in refused.stderr
        assert SECRET not in refused.stdout + refused.stderr
        # The control: the same reader, the same user, a process that is not hardened.
        leaked = read_environ_as(python, plain.pid)
        assert leaked.returncode == 0, leaked.stderr
        assert f"JQ_DB_PASSWORD={SECRET}" in leaked.stdout


def test_children_are_dumpable_again_after_exec() -> None:
    script = (
        "import subprocess, sys\n"
        "from jobq.worker.hardening import is_dumpable, make_non_dumpable\n"
        "assert make_non_dumpable() and is_dumpable() is False\n"
        "child = 'from jobq.worker.hardening import is_dumpable; print(is_dumpable())'\n"
        "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True,"
        " check=True).stdout.strip())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "True"
