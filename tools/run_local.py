"""`make run`: jq-server and one jq-worker on the embedded default, in the foreground.

Ctrl-C (or SIGTERM) stops the worker first — so it can finish or hand back its jobs and
deregister while the server still answers — and then the server. The children run in their own
sessions so the terminal's Ctrl-C reaches only this launcher, which decides the order.

Command jobs are opt-in on a worker (`worker.allowed_commands`, empty by default). For the
README's tour this worker allows `TOUR_COMMANDS` (echo, true, false, sleep, date) unless
JQ_WORKER_ALLOWED_COMMANDS says otherwise; started as root, it runs them as `nobody` unless
JQ_WORKER_RUN_AS_USER says otherwise (a root worker refuses command jobs that would run as
root).
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent

TOUR_COMMANDS = "echo,true,false,sleep,date"
"""What the README's tour runs as command jobs (JQ_WORKER_ALLOWED_COMMANDS replaces it)."""
ROOT_JOB_USER = "nobody"
"""Who command jobs run as when this is started as root (JQ_WORKER_RUN_AS_USER replaces it)."""


def worker_environment(environ: dict[str, str], euid: int) -> dict[str, str]:
    """The worker's environment: `environ` plus the tour's command settings, where unset."""
    env = {"JQ_WORKER_ALLOWED_COMMANDS": TOUR_COMMANDS, **environ}
    if euid == 0 and "JQ_WORKER_RUN_AS_USER" not in env:
        try:
            pwd.getpwnam(ROOT_JOB_USER)
        except KeyError:
            print(
                f"run_local: no user {ROOT_JOB_USER!r} to run command jobs as; the worker "
                "will refuse them (set JQ_WORKER_RUN_AS_USER)",
                file=sys.stderr,
            )
        else:
            env["JQ_WORKER_RUN_AS_USER"] = ROOT_JOB_USER
    return env


def _wait_for_port(
    address: tuple[str, int], process: subprocess.Popen[bytes], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(address, timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


DASHBOARD_PORT = "8000"
"""Where `make run` serves the dashboard and /api/v1 (JQ_DASHBOARD_PORT replaces it; 0: off)."""


def server_environment(environ: dict[str, str]) -> dict[str, str]:
    """The server's environment: `environ`, with the dashboard on unless it says otherwise."""
    return {"JQ_DASHBOARD_PORT": DASHBOARD_PORT, **environ}


def main() -> int:
    extra = sys.argv[1:]
    server_env = server_environment(dict(os.environ))
    server = subprocess.Popen(
        [str(BIN / "jq-server"), "--log-format", "console", *extra],
        env=server_env,
        start_new_session=True,
    )
    # The server's port, as its configuration will see it (flag defaults aside).
    port = int(os.environ.get("JQ_GRPC_PORT", "50051"))
    if not _wait_for_port(("127.0.0.1", port), server, timeout=60):
        _stop(server, 30)
        print("run_local: jq-server did not start", file=sys.stderr)
        return 1
    dashboard = server_env["JQ_DASHBOARD_PORT"]
    if dashboard != "0":
        host = server_env.get("JQ_DASHBOARD_HOST", "127.0.0.1")
        print(f"run_local: dashboard and HTTP API at http://{host}:{dashboard}/", flush=True)
    worker = subprocess.Popen(
        [str(BIN / "jq-worker"), "--log-format", "console", "--import", "jobq.demo_tasks", *extra],
        env=worker_environment(dict(os.environ), os.geteuid()),
        start_new_session=True,
    )
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stopping and server.poll() is None and worker.poll() is None:
        time.sleep(0.2)
    _stop(worker, 60)
    _stop(server, 60)
    return 0 if stopping else 1


if __name__ == "__main__":
    raise SystemExit(main())
