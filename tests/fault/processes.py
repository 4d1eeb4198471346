"""The fault suite's real processes: a jq-server replica and a jq-worker, each startable again
(a replica on its port, a worker under its id, a new `Incarnation` each time), and the signals
the faults send them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fault.history import Incarnation
from support.processes import free_port, grpc_serving, program


async def hold(since: float, seconds: float) -> None:
    """Sleep until `seconds` after `since` (wall clock): a fault's deliberate length."""
    await asyncio.sleep(max(0.0, since + seconds - time.time()))


def signal_if_alive(process: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(sig)


@dataclass(eq=False)
class Replica:
    """A jq-server on a fixed port (a restart comes back on the same one)."""

    name: str
    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def launch(self) -> None:
        log = self.logs / f"{self.name}-{self.starts}.log"
        self.starts += 1
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [program("jq-server"), "--grpc-port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def serving(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}")
            if grpc_serving(self.port, timeout=0.5):
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not serve within {within}s")

    async def restart(self) -> None:
        self.launch()
        await asyncio.to_thread(self.serving)

    def kill(self) -> float:
        """SIGKILL; returns when it is dead (wall clock)."""
        assert self.process is not None
        signal_if_alive(self.process, signal.SIGCONT)
        self.process.kill()
        self.process.wait(timeout=10)
        return time.time()

    def pause(self) -> float:
        signal_if_alive(self.process, signal.SIGSTOP)
        return time.time()

    def resume(self) -> float:
        signal_if_alive(self.process, signal.SIGCONT)
        return time.time()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass(eq=False)
class Worker:
    """A jq-worker with a fixed id; each process started for it is an incarnation."""

    name: str
    worker_id: str
    server_port: int
    concurrency: int
    env: dict[str, str]
    logs: Path
    supervised: bool = False
    restart_delay_s: float = 0.2
    process: subprocess.Popen[bytes] | None = None
    incarnations: list[Incarnation] = field(default_factory=list)
    held_down: bool = False

    def launch(self) -> None:
        log = self.logs / f"{self.name}-{len(self.incarnations)}.log"
        env = {**self.env, "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{self.server_port}"}
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    program("jq-worker"),
                    "--worker-id",
                    self.worker_id,
                    "--concurrency",
                    str(self.concurrency),
                    "--import",
                    "fault.sink_tasks",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.incarnations.append(
            Incarnation(self.name, self.worker_id, self.process.pid, time.time())
        )
        self.held_down = False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def noticed_exit(self, at: float | None = None) -> bool:
        """Record the current process's death once it is dead; True when it just was."""
        last = self.incarnations[-1] if self.incarnations else None
        if self.process is None or last is None or last.ended is not None:
            return False
        if self.process.poll() is None:
            return False
        self.incarnations[-1] = Incarnation(
            last.name, last.worker_id, last.pid, last.started, at or time.time()
        )
        return True

    def kill(self, *, restart: bool = False) -> float:
        """SIGKILL the process; it stays down (also when supervised) unless `restart`, which
        starts a new incarnation at once. Returns when the old one is dead (wall clock)."""
        assert self.process is not None
        self.held_down = True
        self.process.kill()
        self.process.wait(timeout=10)
        died = time.time()
        self.noticed_exit(died)
        if restart:
            self.launch()
        return died

    def pause(self) -> float:
        signal_if_alive(self.process, signal.SIGSTOP)
        return time.time()

    def resume(self) -> float:
        signal_if_alive(self.process, signal.SIGCONT)
        return time.time()
