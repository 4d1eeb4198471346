"""The fault suite's jobs: every execution writes its own life to a sink file, outside jobq.

Each execution (a "run") appends lines `TAG RUN EVENT TIME PID CHAIN` to the sink, one
`write(2)` per line on a file opened with O_APPEND, so lines of concurrent runs never tear:

- TAG: the job's tag, chosen by the test at submit (the payload carries it);
- RUN: a random id of this execution (one job can run twice in one worker process);
- EVENT: `start`, then a `tick` every TICK_S while it works, then `end` just before it
  returns success; an execution that was killed or frozen leaves no `end`, and its last line
  is the last moment it was seen alive;
- TIME: wall-clock seconds (`time.time()`, the clock PostgreSQL's `now()` reads too);
- PID and CHAIN: the executing process and its ancestors (parent first), so the ledger can
  tell which jq-worker process (incarnation) ran it, whatever runs between the two.

Three kinds of job, all trusted by the workers through `--import fault.sink_tasks`:

- `run` (a sync handler: a thread of the worker process) and `block_loop` (an `async def`
  that calls `time.sleep`, so it blocks the worker's event loop for its whole duration);
- the command form: this file run as a script by the worker's command executor
  (`command_payload`), a process of its own; `poison` mode kills the jq-worker that runs it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

TICK_S = 0.1
SCRIPT = str(Path(__file__).resolve())
WORKER_PROGRAM = "jq-worker"


class _Run:
    """One execution's lines in the sink."""

    def __init__(self, sink: str, tag: str) -> None:
        self._fd = os.open(sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self._tag = tag
        self._run = uuid.uuid4().hex[:12]
        self._chain = ",".join(str(p) for p in ancestors(os.getpid())) or "-"

    def write(self, event: str) -> None:
        line = f"{self._tag} {self._run} {event} {time.time():.6f} {os.getpid()} {self._chain}\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        os.close(self._fd)


def ancestors(pid: int, depth: int = 6) -> list[int]:
    """`pid`'s parent, grandparent, ... (up to `depth`), read from /proc."""
    chain: list[int] = []
    while len(chain) < depth:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        # The command name may hold spaces and parentheses: the fields after its last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent <= 1:
            break
        chain.append(parent)
        pid = parent
    return chain


def _work(run: _Run, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(TICK_S, left))  # the job's work: stay busy for `seconds`
        run.write("tick")


def run(sink: str, tag: str, seconds: float) -> str:
    """A sync handler: works `seconds` in a worker thread, recording its life in `sink`."""
    execution = _Run(sink, tag)
    try:
        execution.write("start")
        _work(execution, seconds)
        execution.write("end")
    finally:
        execution.close()
    return tag


async def block_loop(sink: str, tag: str, seconds: float) -> str:
    """An `async def` handler that never awaits: it blocks the worker's event loop (and so
    its heartbeats) for `seconds`."""
    execution = _Run(sink, tag)
    try:
        execution.write("start")
        _work(execution, seconds)
        execution.write("end")
    finally:
        execution.close()
    return tag


def handler_payload(sink: Path, tag: str, seconds: float, *, blocking: bool = False) -> bytes:
    name = "block_loop" if blocking else "run"
    call = {"handler": f"fault.sink_tasks:{name}", "args": [str(sink), tag, seconds]}
    return json.dumps(call).encode()


def command_payload(sink: Path, tag: str, seconds: float, *, poison: bool = False) -> bytes:
    mode = "poison" if poison else "work"
    argv = [sys.executable, SCRIPT, str(sink), tag, str(seconds), mode]
    return json.dumps({"command": argv, "timeout_s": 120}).encode()


def tag_of(payload: bytes) -> str | None:
    """The tag of a payload made by `handler_payload` or `command_payload`."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if isinstance(body, dict) and "handler" in body:
        return str(body["args"][1])
    if isinstance(body, dict) and "command" in body:
        return str(body["command"][3])
    return None


def _kill_my_worker() -> None:
    for pid in ancestors(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if WORKER_PROGRAM.encode() in cmdline:
            os.kill(pid, signal.SIGKILL)
            return
    raise SystemExit("poison: no jq-worker among my ancestors")


def main(argv: list[str]) -> int:
    sink, tag, seconds, mode = argv
    execution = _Run(sink, tag)
    execution.write("start")
    if mode == "poison":
        _kill_my_worker()
        return 0
    _work(execution, float(seconds))
    execution.write("end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
