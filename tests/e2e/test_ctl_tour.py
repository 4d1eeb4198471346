"""The README's five-minute tour works: its jq-ctl commands, run in order against a real
jq-server and jq-worker, all succeed.

The tour is the README text between `<!-- tour:start -->` and `<!-- tour:end -->`; its commands
are the lines of its ```sh blocks that start with `jq-ctl` (comments after `#` dropped). `<id>`
stands for the id printed by the last `job submit`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
from pathlib import Path

from support.ctl import jq_ctl_at, wait_for_status
from support.processes import ServerFactory, ServerProcess, WorkerFactory

README = Path(__file__).resolve().parents[2] / "README.md"
RUN_LOCAL = Path(__file__).resolve().parents[2] / "tools" / "run_local.py"


def make_run_worker_env() -> dict[str, str]:
    """The worker settings `make run` adds (tools/run_local.py's own function)."""
    spec = importlib.util.spec_from_file_location("run_local", RUN_LOCAL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    env: dict[str, str] = module.worker_environment({}, os.geteuid())
    return env


ID = "<id>"


def tour_text() -> str:
    text = README.read_text()
    start, end = text.index("<!-- tour:start -->"), text.index("<!-- tour:end -->")
    return text[start:end]


def tour_commands(text: str) -> list[list[str]]:
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line, comments=True) for line in lines if line.startswith("jq-ctl ")]


def run(server: ServerProcess, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return jq_ctl_at(server, *argv[1:])


def test_the_tour_starts_with_make_run_and_covers_the_cli() -> None:
    text = tour_text()
    commands = tour_commands(text)
    assert text.index("make run") < text.index("jq-ctl")
    for group, command in [
        ("job", "submit"),
        ("job", "status"),
        ("job", "logs"),
        ("job", "retry"),
        ("queue", "stats"),
        ("worker", "list"),
        ("system", "status"),
    ]:
        assert any(
            argv[i : i + 2] == [group, command] for argv in commands for i in range(len(argv))
        ), (group, command)
    assert sum(ID in argv for argv in commands) >= 5


async def test_every_tour_command_succeeds_in_order(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    # like `make run`: one worker on the default queue that trusts the demo tasks and runs only
    # the tour's commands (tools/run_local.py), as nobody when the tests run as root
    worker = start_worker(server, "--import", "jobq.demo_tasks", env=make_run_worker_env())
    last_id: str | None = None
    failing_id: str | None = None
    refused_id: str | None = None
    python_ids: list[str] = []
    for argv in tour_commands(tour_text()):
        if ID in argv:
            assert last_id is not None, f"{shlex.join(argv)} comes before any job submit"
            argv = [last_id if arg == ID else arg for arg in argv]
        if argv[1:3] == ["job", "retry"]:
            assert last_id == failing_id
            wait_for_status(server, argv[3], "DEAD_LETTERED")
        result = run(server, argv)
        assert result.returncode == 0, (shlex.join(argv), result.stderr)
        assert result.stderr == "", shlex.join(argv)
        assert result.stdout.strip(), shlex.join(argv)
        if argv[1:3] == ["job", "submit"]:
            last_id = result.stdout.strip()
            if argv[-1] == "false":
                failing_id = last_id
            if argv[-1] == "id":
                refused_id = last_id
            if any('"handler"' in arg for arg in argv):
                python_ids.append(last_id)
    assert failing_id is not None
    assert refused_id is not None, "the tour shows a refused command"
    refused = wait_for_status(server, refused_id, "DEAD_LETTERED")
    assert refused["retry_count"] == 0
    assert refused["error_message"].startswith("command not allowed: id")
    assert python_ids, "the tour shows a Python-callable job"
    for job_id in python_ids:
        wait_for_status(server, job_id, "DONE")
    assert worker.terminate() == 0
