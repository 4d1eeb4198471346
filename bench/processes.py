"""Start and watch the processes under test: jq-server, jq-worker (PostgreSQL: bench.postgres)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Program:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


WORKER_ENV = {"JQ_WORKER_ALLOWED_COMMANDS": "true", "JQ_WORKER_ALLOW_ROOT_JOBS": "true"}
"""jq-worker refuses command jobs unless allowed, and on root unless root jobs are allowed; the
benchmark's command jobs run `true`, as whoever runs the benchmark (as before, so figures stay
comparable: a switch of user per job (worker.run_as_user) would also cost a fork instead of a
vfork)."""


def start_program(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Program:
    log = log_dir / f"{name}.log"
    defaults = WORKER_ENV if name == "jq-worker" else {}
    full_env = {
        **os.environ,
        # The programs import jobq from this tree's src/ (not whatever the virtualenv's
        # editable install points at), so a benchmark run from another checkout (an A/B of
        # two commits) measures that checkout's server and worker; the root is for
        # bench.handlers, which the worker imports.
        "PYTHONPATH": os.pathsep.join((str(REPO / "src"), str(REPO))),
        "JQ_LOGGING_LEVEL": "warning",
        **defaults,
        **env,
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / name), *args], env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    return Program(name, process, log)


def wait_for_port(port: int, program: Program, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if program.process.poll() is not None:
            raise RuntimeError(f"{program.name} exited:\n{program.log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{program.name} did not listen on {port}")


@dataclass
class PeakRss:
    """Samples a process's resident memory every 50 ms in a thread; keeps the peak (MB)."""

    pid: int
    peak_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> PeakRss:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            process = psutil.Process(self.pid)
            while not self._stop.is_set():
                self.peak_mb = max(self.peak_mb, process.memory_info().rss / 2**20)
                time.sleep(0.05)
        except psutil.NoSuchProcess:
            return

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return round(self.peak_mb, 1)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total
